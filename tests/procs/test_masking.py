"""mask_folder: secrets masked in every text file of an exported logs folder, in place."""

import os

from tasks.libs.procs.masking import mask_folder
from tasks.libs.procs.runner import Runner


def masker(*secrets):
    runner = Runner()
    runner.add_secrets(secrets)
    return runner.mask_text


def test_every_text_file_is_masked_in_place_and_keeps_its_mode(tmp_path):
    logs = tmp_path / "kind-logs"
    pod_log = logs / "c1-control-plane" / "containers" / "api_ns_api-1.log"
    pod_log.parent.mkdir(parents=True)
    pod_log.write_text("connecting to postgres://app:s3cr3t-pass@db:5432\nready\n")
    os.chmod(pod_log, 0o600)
    journal = logs / "c1-control-plane" / "journal.log"
    journal.write_text("token=tok-12345 accepted\nmulti\nline-secret\n")
    clean = logs / "podman-info.txt"
    clean.write_text("host: arch: amd64\n")

    found = mask_folder(logs, masker("s3cr3t-pass", "tok-12345", "multi\nline-secret"))

    assert pod_log.read_text() == "connecting to postgres://app:***@db:5432\nready\n"
    assert journal.read_text() == "token=*** accepted\n***\n"  # a value spanning lines too
    assert clean.read_text() == "host: arch: amd64\n"
    assert sorted(found["masked"]) == sorted([pod_log, journal])
    assert oct(pod_log.stat().st_mode & 0o777) == oct(0o600)
    assert not list(logs.rglob("*.tmp"))


def test_binary_files_are_left_alone_and_invalid_utf8_is_kept(tmp_path):
    binary = tmp_path / "core.tar"
    content = b"\x1f\x8b\x08\x00s3cr3t-pass\x00\xff\xfe"
    binary.write_bytes(content)
    latin = tmp_path / "kubelet.log"
    latin.write_bytes(b"caf\xe9 s3cr3t-pass end\n")

    found = mask_folder(tmp_path, masker("s3cr3t-pass"))

    assert binary.read_bytes() == content
    assert found["binary"] == [binary]
    assert latin.read_bytes() == b"caf\xe9 *** end\n"  # the byte that is not UTF-8 survives


def test_files_over_the_bound_lose_their_content_instead_of_keeping_secrets(tmp_path):
    big = tmp_path / "big.log"
    big.write_text("s3cr3t-pass\n" * 100)
    small = tmp_path / "small.log"
    small.write_text("s3cr3t-pass\n")

    found = mask_folder(tmp_path, masker("s3cr3t-pass"), max_bytes=500)

    assert found["too_large"] == [big]
    assert "s3cr3t-pass" not in big.read_text()
    assert "more than the 500 that are masked" in big.read_text()
    assert small.read_text() == "***\n"


def test_symlinks_are_not_followed_and_a_missing_folder_is_nothing_to_do(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("s3cr3t-pass\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "link.txt").symlink_to(outside)

    assert mask_folder(logs, masker("s3cr3t-pass")) == {"masked": [], "binary": [], "too_large": []}
    assert outside.read_text() == "s3cr3t-pass\n"
    assert mask_folder(tmp_path / "absent", masker("x")) == {"masked": [], "binary": [], "too_large": []}
