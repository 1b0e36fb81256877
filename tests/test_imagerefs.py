import pytest

from tasks.libs import imagerefs


@pytest.mark.parametrize(
    "text,registry,path,tag,digest",
    [
        ("localhost/kubernaut/datastorage:abc", "localhost", "kubernaut/datastorage", "abc", ""),
        ("postgres", "", "postgres", "", ""),
        ("docker.io/library/postgres:16-alpine", "docker.io", "library/postgres", "16-alpine", ""),
        ("localhost:5000/team/api:v1", "localhost:5000", "team/api", "v1", ""),
        ("127.0.0.1:5001/a/b", "127.0.0.1:5001", "a/b", "", ""),
        ("quay.io/org/img@sha256:" + "a" * 64, "quay.io", "org/img", "", "sha256:" + "a" * 64),
        (
            "reg.example.com:443/x/y:t@sha256:" + "b" * 64,
            "reg.example.com:443",
            "x/y",
            "t",
            "sha256:" + "b" * 64,
        ),
        ("kubernaut/holmesgpt-api:dev", "", "kubernaut/holmesgpt-api", "dev", ""),
        ("a/b__c/d.e-f:1.0_rc", "", "a/b__c/d.e-f", "1.0_rc", ""),
    ],
)
def test_parse_round_trips(text, registry, path, tag, digest):
    ref = imagerefs.parse(text)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (registry, path, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " api",
        "API/x",
        "a//b",
        "x:",
        "x:-bad",
        "-x",
        "a/b:c:d",
        "x@sha256:short",
        "a/_b",
        5,
        None,
        "localhost/" + "a" * 300,
    ],
)
def test_parse_refuses_bad_references(bad):
    with pytest.raises(imagerefs.BadReference):
        imagerefs.parse(bad)


@pytest.mark.parametrize(
    "text,normal",
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("kubernaut/datastorage:t", "docker.io/kubernaut/datastorage:t"),
        ("localhost/kubernaut/datastorage:t", "localhost/kubernaut/datastorage:t"),
        ("docker.io/nginx:1", "docker.io/library/nginx:1"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("x@sha256:" + "c" * 64, "docker.io/library/x@sha256:" + "c" * 64),
    ],
)
def test_normalize_like_containerd(text, normal):
    assert imagerefs.normalize(text) == normal


def test_localhost_prefix_is_not_the_same_image_as_unqualified():
    # The bug that cost Kubernaut the most: saved as localhost/..., referenced without it.
    assert not imagerefs.same_image("localhost/kubernaut/datastorage:t", "kubernaut/datastorage:t")
    assert imagerefs.same_image("nginx", "docker.io/library/nginx:latest")


def test_local_ref_adds_localhost_exactly_once():
    ref = imagerefs.local_ref("kubernaut", "datastorage", "t1")
    assert ref == "localhost/kubernaut/datastorage:t1"
    assert imagerefs.parse(ref).registry == "localhost"
    assert imagerefs.repository("kubernaut", "datastorage") == "localhost/kubernaut/datastorage"


@pytest.mark.parametrize("service", ["Data_Storage", "api!", ""])
def test_local_ref_refuses_names_outside_the_grammar(service):
    with pytest.raises(imagerefs.BadReference):
        imagerefs.local_ref("kubernaut", service, "t")


def test_unique_tag_follows_dd_test_001():
    tag = imagerefs.unique_tag("holmesgpt-api", "jdoe", "1a2b3c4", 1764000000)
    assert tag == "holmesgpt-api-jdoe-1a2b3c4-1764000000"


def test_unique_tag_outside_git_and_with_odd_user_names():
    tag = imagerefs.unique_tag("api", "Jane Doe@corp", None, 1)
    assert tag == "api-jane-doe-corp-nogit-1"
    assert imagerefs.TAG_RE.match(tag)


def test_unique_tag_stays_valid_when_long():
    tag = imagerefs.unique_tag("s" * 100, "u" * 60, "abc1234", 1764000000)
    assert len(tag) <= 128 and tag.endswith("abc1234-1764000000")


@pytest.mark.parametrize("bad", ["", "-x", ".x", "a b", "x" * 129, "a/b", "ä"])
def test_check_tag_refuses(bad):
    with pytest.raises(imagerefs.BadReference):
        imagerefs.check_tag(bad)
