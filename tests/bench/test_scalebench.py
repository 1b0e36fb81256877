"""bench.scale's own logic, without subprocesses: sizes, generated stacks, command counts, output."""

import pytest

from tasks.libs import samples
from tasks.libs.bench import scale as scalebench
from tasks.libs.bench.scale import Measured
from tasks.libs.errors import KindlingError
from tasks.libs.stack.model import load_stack


def test_sizes_are_parsed_sorted_and_distinct():
    assert scalebench.parse_sizes("50,3,20,3") == [3, 20, 50]
    assert scalebench.parse_sizes(" 7 ") == [7]


@pytest.mark.parametrize("text", ["", "three", "0,3", "3,999", "-1"])
def test_bad_sizes_name_the_option_and_the_fix(text):
    with pytest.raises(KindlingError) as failed:
        scalebench.parse_sizes(text)
    assert "--sizes" in str(failed.value) and "e.g. --sizes 3,20,50" in str(failed.value)


def test_generated_stack_is_valid_with_half_the_services_depending_on_another(tmp_path):
    services = scalebench.scale_services(20)
    path = samples.write_stack(tmp_path, services, name="scale20", project="scaletest", base_image="busybox")
    stack = load_stack(path, env={})  # every check a user's stack gets: files, depends_on, cycles
    assert len(stack.services) == 20
    dependants = {name for name, s in stack.services.items() if s.depends_on}
    assert len(dependants) == 10
    assert list(stack.services["svc020"].depends_on) == ["svc010"]
    assert all(s.built for s in stack.services.values())


def test_commands_are_counted_from_the_command_log():
    log = (
        "10:00:00 [read-only] podman images --format json\n"
        "10:00:01 podman build -t x .\n"
        "10:00:02 podman save x | KIND_EXPERIMENTAL_PROVIDER=podman kind load image-archive /dev/stdin\n"
        "10:00:03 [dry-run] kubectl apply -f a.yaml\n"
    )
    assert scalebench.command_counts(log) == (4, 3)  # the pipe is two commands; dry-run lines none


def measured(wall, commands, mutating=0, disk=0, loads=None):
    return Measured(wall, commands, mutating, disk, loads or {})


def test_table_and_ratios_show_the_growth():
    rows = [
        (3, measured(20.0, 40, 20, 3 * 2**20, {"streamed": 3}), measured(2.0, 10)),
        (50, measured(200.0, 400, 200, 50 * 2**20, {"streamed": 50}), measured(3.0, 12)),
    ]
    table = scalebench.table(rows)
    assert "warm mutating" in table.splitlines()[0]
    assert table.splitlines()[2].split() == [
        "50",
        "200.0s",
        "3.0s",
        "400",
        "12",
        "0",
        "50.0",
        "MiB",
        "50",
        "streamed",
    ]
    ratios = scalebench.ratios(rows)
    assert "warm(50) / warm(3)             1.50" in ratios
    assert "commands(50) / commands(3)     1.20   (warm runs; cold runs 10.00)" in ratios


def test_baseline_lines_compare_archive_files_with_streams():
    streamed = measured(20.0, 40, disk=4 * 2**20, loads={"streamed": 2})
    archive = measured(21.0, 40, disk=8 * 2**20, loads={"loaded": 2})
    text = scalebench.baseline_lines((streamed, archive), 2)
    assert "8.0 MiB   loads: 2 loaded" in text and "4.0 MiB   loads: 2 streamed" in text
    assert "2.00 x   (2.0 MiB more per image with archive files)" in text
