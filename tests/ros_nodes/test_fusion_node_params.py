"""fusion_node's ``fusion.*`` parameters are generated from its config, ``GateSettings`` and
``ExitSettings``: every field is declared once under the names configs/vehicle.yaml and the
README use, read back strictly, updated at run time with errors naming the parameter, and the
offline-only gates are refused. In-process, on a bare rclpy node (no model is loaded)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from fusion_core.config_io import ConfigError, parameter_names
from fusion_core.exits.settings import ExitSettings
from fusion_core.gates.modes import GATES
from fusion_core.gates.settings import GateSettings
from ros_nodes.fusion_node import (
    NODE_EXIT_SETTINGS,
    NODE_GATE_SETTINGS,
    FusionNodeConfig,
    declare_fusion_parameters,
    online_gate,
    read_fusion_parameters,
)
from ros_nodes.node_params import update_section
from tests.ros_nodes.dds import fresh_domain_id

REPO = Path(__file__).resolve().parents[2]
# The names configs/vehicle.yaml, the README and `dyn-fusion up --set` use: they must not change.
SETTINGS_PARAMETERS = {"gate_mode", "k", "gamma", "lam_per_j", "price_sensors", "attention_weights", "ood_z2", "spread_weight",
                       "static_margin",
                       "exit_policy", "exit_threshold", "exit_budget", "exit_lam", "deadline_ms"}


@pytest.fixture
def node():
    context = Context()
    rclpy.init(context=context, domain_id=fresh_domain_id())
    node = Node("fusion_params_test", context=context, start_parameter_services=False)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_every_field_is_one_declared_parameter_under_its_old_name(node):
    declare_fusion_parameters(node)
    declared = set(node.get_parameters_by_prefix("fusion"))
    names = [p for cls in (FusionNodeConfig, GateSettings, ExitSettings) for p in parameter_names(cls).values()]
    assert len(names) == len(set(names)), "two classes declare the same fusion.* parameter"
    assert declared == set(names)
    assert SETTINGS_PARAMETERS == {*parameter_names(GateSettings).values(), *parameter_names(ExitSettings).values()}
    doc = node.describe_parameter("fusion.gate_mode").description
    assert doc == GateSettings.__dataclass_fields__["mode"].metadata["doc"]


def test_vehicle_yaml_sets_only_declared_parameters():
    block = yaml.safe_load((REPO / "configs" / "vehicle.yaml").read_text())["/**"]["ros__parameters"]["fusion"]
    known = {p for cls in (FusionNodeConfig, GateSettings, ExitSettings) for p in parameter_names(cls).values()}
    assert set(block) <= known, set(block) - known


def test_parameters_read_back_as_the_settings(node):
    declare_fusion_parameters(node)
    config, gate, exits = read_fusion_parameters(node)
    assert (config, gate, exits) == (FusionNodeConfig(), NODE_GATE_SETTINGS, NODE_EXIT_SETTINGS)
    node.set_parameters([Parameter("fusion.gate_mode", value="attention"), Parameter("fusion.k", value=3),
                         Parameter("fusion.exit_policy", value="confidence")])
    _, gate, exits = read_fusion_parameters(node)
    assert gate == dataclasses.replace(NODE_GATE_SETTINGS, mode="attention", k=3)
    assert exits == dataclasses.replace(NODE_EXIT_SETTINGS, policy="confidence")
    node.set_parameters([Parameter("fusion.exit_budget", value=1.5)])
    with pytest.raises(ConfigError, match=r"^fusion\.exit_budget: 1\.5 is above the maximum 1"):
        read_fusion_parameters(node)


def test_run_time_updates_are_checked_and_name_the_parameter():
    updates = {"gate_mode": "knowledge", "lam_per_j": 2.0, "exit_lam": 0.5, "slow_frame_ms": 3.0}
    assert update_section(NODE_GATE_SETTINGS, "fusion", updates) == GateSettings(mode="knowledge", lam_per_j=2.0)
    assert update_section(NODE_EXIT_SETTINGS, "fusion", updates).lam == 0.5
    for parameter, value, message in (("gate_mode", "teleport", "'teleport' is not one of"),
                                      ("k", 0, "0 is below the minimum 1"),
                                      ("exit_policy", "sometimes", "'sometimes' is not one of")):
        cls_settings = NODE_EXIT_SETTINGS if parameter.startswith("exit") else NODE_GATE_SETTINGS
        with pytest.raises(ConfigError, match=f"^fusion.{parameter}: {message}"):
            update_section(cls_settings, "fusion", {parameter: value})


def test_offline_gates_are_refused_on_the_robot():
    for name, gate in GATES.items():
        settings = GateSettings(mode=name)
        if gate.offline_only:
            with pytest.raises(ConfigError, match="offline only"):
                online_gate(settings)
        else:
            assert online_gate(settings) is settings
