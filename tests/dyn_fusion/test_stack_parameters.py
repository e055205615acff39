"""Node parameters are checked before a stack starts: ``--set`` (node, parameter, type, range) and
the params file, with the config classes' rules; a value that passes reaches ROS with its declared
type. Found by a user: ``--set fusion_node:power.enabled=1`` and ``fusion.lam_per_j=abc`` ran with
rc 0 and power gating off, ``--set foo_node:x=1`` and ``fusion_node:fusion.bogus=1`` were ignored."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node

from dyn_fusion.cli import main
from dyn_fusion.cli_stack import _overrides
from fusion_core.config_io import ConfigError
from fusion_core.runtime.power_gating import PowerGatingConfig
from ros_nodes.fusion_node import PARAMETER_SECTIONS
from ros_nodes.node_params import check_params_file, declare_sections, read_section
from ros_nodes.node_plan import STACKS, params_file, stack_plan
from tests.ros_nodes.dds import fresh_domain_id

NODES = {spec.name: spec.module for stack in STACKS for spec in stack_plan(stack)}


@pytest.mark.parametrize("pair, message", [
    ("fusion_node:power.enabled=1", "power.enabled: expected true/false, got int 1"),
    ("fusion_node:fusion.lam_per_j=abc", "fusion.lam_per_j: expected a number, got str 'abc'"),
    ("foo_node:x=1", "no node 'foo_node' in the vehicle stack (nodes: energy_monitor, fusion_node, sim_node)"),
    ("bag_player:player.rate=2", "no node 'bag_player' in the vehicle stack"),
    ("fusion_node:fusion.bogus=1", "no parameter 'fusion.bogus'; parameters under fusion.: "),
    ("fusion_node:sync.roles=[lidar]", "no parameter 'sync.roles'"),  # set by the node from the mapping
    ("fusion_node:fusion.gate_mode=fastest", "fusion.gate_mode: 'fastest' is not one of static"),
    ("fusion_node:fusion.k=0", "fusion.k: 0 is below the minimum 1"),
    ("fusion_node:fusion.lam_per_j", "expected NODE:PARAM=VALUE"),
])
def test_bad_set_values_are_one_line_errors_naming_the_parameter(pair, message):
    with pytest.raises(ConfigError) as err:
        _overrides([pair], "vehicle")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("--set") and pair in str(err.value)


def test_checked_values_reach_a_node_with_their_declared_types():
    overrides = _overrides(["fusion_node:power.enabled=true", "fusion_node:fusion.lam_per_j=30",
                            "fusion_node:fusion.gate_mode=static", "fusion_node:fusion.calibration_file=",
                            "fusion_node:use_sim_time=true", "sim_node:sim.scenario=2024"], "vehicle")
    fusion = overrides["fusion_node"]
    # 30 becomes a float literal: an integer would be dropped by ROS for a double parameter.
    assert fusion["fusion.lam_per_j"] == "30.0" and fusion["power.enabled"] == "true"
    assert overrides["sim_node"]["sim.scenario"] == '"2024"'  # a name, not a number
    context = Context()
    rclpy.init(context=context, domain_id=fresh_domain_id())
    try:
        args = ["--ros-args"] + [a for k, v in fusion.items() for a in ("-p", f"{k}:={v}")]
        node = Node("set_check", context=context, cli_args=args, start_parameter_services=False)
        declare_sections(node, PARAMETER_SECTIONS)
        assert read_section(node, "power", PowerGatingConfig).enabled is True
        assert node.get_parameter("fusion.lam_per_j").value == 30.0
        assert node.get_parameter("fusion.gate_mode").value == "static"
        assert node.get_parameter("fusion.calibration_file").value == ""
        assert node.get_parameter("use_sim_time").value is True
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_shipped_params_file_passes_and_a_bad_one_names_the_key(tmp_path):
    check_params_file(params_file("vehicle"), NODES)
    text = params_file("vehicle").read_text()
    for old, new, message in [
        ("lam_per_j: 5.0", "lam_per_j: fast", "fusion.lam_per_j: expected a number"),
        ("gate_mode: loss", "gate_mod: loss", "no parameter 'fusion.gate_mod'"),
        ("    fusion:\n", "    fusion:\n      bogus: 1\n", "no parameter 'fusion.bogus'"),
    ]:
        assert old in text
        bad = tmp_path / "bad.yaml"
        bad.write_text(text.replace(old, new, 1))
        with pytest.raises(ConfigError, match=message):
            check_params_file(bad, NODES)
    bad.write_text("other_node:\n  ros__parameters:\n    x: 1\n")
    with pytest.raises(ConfigError, match="other_node: no such node"):
        check_params_file(bad, NODES)


def test_up_refuses_a_bad_set_before_starting_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["up", "vehicle", "--out", str(out), "--set", "fusion_node:fusion.bogus=1"]) == 2
    assert "no parameter 'fusion.bogus'" in capsys.readouterr().err
    assert not out.exists()


def _old_run(path):
    (path / "logs").mkdir(parents=True)
    (path / "report.md").write_text("the previous report\n")


def test_overwrite_keeps_the_previous_run_until_the_new_one_has_started(tmp_path):
    from dyn_fusion.cli_stack import _RunFolder

    out = tmp_path / "run"
    _old_run(out)
    folder = _RunFolder(out, overwrite=True)
    assert out.is_dir() and not any(out.iterdir())  # the new run's folder
    (out / "logs").mkdir()
    folder.restore()  # the new run failed to start
    assert (out / "report.md").read_text() == "the previous report\n"
    folder = _RunFolder(out, overwrite=True)
    folder.started()
    assert not (out / "report.md").exists() and not folder.previous and len(list(tmp_path.iterdir())) == 1
    folder.restore()  # after the start there is nothing to restore: the new run stays
    assert out.is_dir()


def test_overwrite_refuses_a_regular_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me\n")
    assert main(["up", "vehicle", "--out", str(target), "--overwrite"]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err
    assert target.read_text() == "keep me\n"


def test_a_failing_start_keeps_the_previous_run(tmp_path, capsys):
    """fusion_node cannot start (a gates file that does not exist): rc 1, the old report stays."""
    out = tmp_path / "run"
    _old_run(out)
    rc = main(["up", "vehicle", "--out", str(out), "--overwrite", "--duration-s", "1",
               "--set", f"fusion_node:fusion.gates={tmp_path / 'missing_gates.pt'}"])
    assert rc == 1
    assert "the previous run in" in capsys.readouterr().out
    assert (out / "report.md").read_text() == "the previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
