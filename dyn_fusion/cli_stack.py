"""The ROS 2 stack commands of ``dyn-fusion``: ``up`` (the vehicle stack: simulator -> fusion ->
energy monitor, then a report) and ``replay`` (a recorded bag through the same fusion node)."""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
from pathlib import Path

from fusion_core.config_io import ConfigError


def add_commands(sub) -> None:
    """Register ``up`` and ``replay``."""
    p = sub.add_parser("up", help="run the vehicle stack (sim_node, fusion_node, energy_monitor) and report")
    p.add_argument("stack", choices=("vehicle",), help="the node plan to run (ros_nodes/node_plan.py)")
    p.add_argument("--scenario", default="default", help="scenario name or YAML path (default: default)")
    p.add_argument("--duration-s", type=float, default=30.0, help="scenario seconds to run (default 30)")
    p.add_argument("--out", type=Path, default=Path("runs/latest"), help="run folder (default runs/latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--set", action="append", default=[], metavar="NODE:PARAM=VALUE",
                   help="override one node parameter, e.g. fusion_node:fusion.gate_mode=static (repeatable)")
    _add_record_flags(p)


    p = sub.add_parser("replay", help="play a rosbag through fusion_node and energy_monitor over DDS, and report")
    p.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3) or ROS 1 .bag file")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed against the wall clock (default 1)")
    p.add_argument("--topics", default="sim_bag",
                   help="topic mapping: a name in configs/data/ or a YAML path (default sim_bag)")
    p.add_argument("--out", type=Path, default=Path("runs/replay"), help="run folder (default runs/replay)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--set", action="append", default=[], metavar="NODE:PARAM=VALUE",
                   help="override one node parameter (repeatable)")
    _add_record_flags(p)


def _add_record_flags(p) -> None:
    p.add_argument("--record", action="store_true",
                   help="also record the run as a rosbag2 MCAP in OUT/record/ (detections, also as "
                        "vision_msgs/Detection3DArray, diagnostics, ground truth): Foxglove and ros2 bag open it")
    p.add_argument("--record-sensors", action="store_true", help="with --record: the sensor topics too (large)")


def _record_overrides(args: argparse.Namespace, mapping) -> dict[str, str]:
    """The energy monitor's recording parameters for ``--record`` / ``--record-sensors``."""
    from ros_nodes.fusion_pipeline import subscribed_topics
    from ros_nodes.node_params import ros_value_text

    if args.record_sensors and not args.record:
        raise ConfigError("--record-sensors: only with --record")
    if not args.record:
        return {}
    topics = [f"{topic}={msgtype}" for topic, msgtype in subscribed_topics(mapping).values()] if args.record_sensors else []
    return {"energy.record": "true", "energy.record_topics": ros_value_text(tuple(topics))}


def _overrides(pairs: list[str], stack: str) -> dict[str, dict[str, str]]:
    """``--set NODE:PARAM=VALUE`` pairs as node -> {param: value text ROS reads with the declared
    type}. Each is checked before anything starts: the node must be in ``stack``, the parameter
    one the node declares, the value of its type and range (ROS itself would ignore a typo and
    drop a value whose type differs from the params file's, and the run would go on without it)."""
    from ros_nodes.node_params import check_parameter, node_parameter_table, ros_value_text
    from ros_nodes.node_plan import stack_plan

    specs = {spec.name: spec for spec in stack_plan(stack)}
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        node, sep, rest = pair.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not node or not key:
            raise ConfigError(f"--set {pair!r}: expected NODE:PARAM=VALUE, e.g. fusion_node:fusion.lam_per_j=30")
        if node not in specs:
            raise ConfigError(f"--set {pair!r}: no node {node!r} in the {stack} stack (nodes: {', '.join(specs)})")
        checked = check_parameter(node_parameter_table(specs[node].module), key, value, f"--set {pair!r}",
                                  from_text=True)
        out.setdefault(node, {})[key] = ros_value_text(checked)
    return out


class _RunFolder:
    """The run folder ``out``. With ``overwrite``, an existing run moves aside (``.<name>.replaced``)
    and is deleted only once the new run has started (``started``); if the command fails before
    that, the new folder is removed and the old run put back (``restore``), so a failing start
    never costs the previous report. A regular file or a folder that is not a run is refused."""

    def __init__(self, out: Path, overwrite: bool):
        self.out = out
        self.previous: Path | None = None
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise ConfigError(f"{out}: exists; pass --overwrite to replace it")
            if not out.is_dir():
                raise ConfigError(f"{out}: is a file, not a run folder; refusing to replace it")
            if not (out / "logs").is_dir() and any(out.iterdir()):
                raise ConfigError(f"{out}: exists and is not a run folder (no logs/); refusing to delete it")
            self.previous = out.with_name(f".{out.name}.replaced")
            if self.previous.exists():  # left by a command killed before it could clean up
                shutil.rmtree(self.previous)
            out.rename(self.previous)
        out.mkdir(parents=True)

    def started(self) -> None:
        if self.previous is not None:
            shutil.rmtree(self.previous, ignore_errors=True)
            self.previous = None

    def restore(self) -> None:
        if self.previous is not None:
            shutil.rmtree(self.out, ignore_errors=True)
            self.previous.rename(self.out)
            self.previous = None


@contextlib.contextmanager
def _restored_on_error(folder: _RunFolder):
    try:
        yield
    except BaseException:
        folder.restore()
        raise


def _report_grid(overrides: dict[str, dict[str, str]]):
    """The detection region of the checkpoint fusion_node will load (the report evaluates in it)."""
    from fusion_core.training.checkpoint import load_checkpoint

    chosen = overrides.get("fusion_node", {}).get("fusion.checkpoint")
    checkpoint = "models/default.pt" if chosen is None else json.loads(chosen)  # checked: a JSON string
    return load_checkpoint(checkpoint).model_config.grid


def _run_and_report(command: str, stack: str, folder: _RunFolder, plan_overrides: dict[str, dict[str, str]],
                    user_overrides: dict[str, dict[str, str]], grid, title: str, live: bool,
                    require_frames: bool) -> int:
    """Run ``stack`` with the command's overrides (the user's --set last), write and print the
    report; the exit code: 1 if the stack failed, a node exited with an error, or (with
    ``require_frames``) nothing was fused."""
    from dyn_fusion.run_report import write_report
    from dyn_fusion.stack_runner import StackError, StackInterrupted, StackRun, run_stack
    from ros_nodes.dds_shm import remove_dead_participant_files
    from ros_nodes.node_plan import stack_plan

    out = folder.out
    for node, values in user_overrides.items():
        plan_overrides.setdefault(node, {}).update(values)
    removed = remove_dead_participant_files()  # what killed runs left in /dev/shm (ros_nodes.dds_shm)
    if removed.files:
        print(f"[up] removed {removed.summary()}")
    partial = None
    try:
        codes = run_stack(StackRun(stack, out, plan_overrides, on_started=folder.started))
    except StackError as err:
        if err.started:  # the nodes recorded the run until then: report it, marked partial
            partial = str(err).splitlines()[0].rstrip(":")
            print(f"dyn-fusion {command}: {err}")
            write_report(out, grid, title, live=live, partial=partial)
            print("\n" + (out / "report.md").read_text())
            print(f"run folder: {out} (report.md, report.json, {_pictures(out, grid)}logs/); the run is partial: {partial}")
        elif folder.previous is not None:
            folder.restore()
            print(f"dyn-fusion {command}: {err} (the previous run in {out} is kept)")
        else:
            print(f"dyn-fusion {command}: {err}")
        return 130 if isinstance(err, StackInterrupted) else 1
    except BaseException:  # interrupted while starting: the previous run stays
        folder.restore()
        raise
    failed = {n: c for n, c in codes.items() if c != 0}
    source = next(spec.name for spec in stack_plan(stack) if spec.ends_the_run)
    if failed:
        partial = "; ".join(f"{n} {'was killed by signal ' + str(-c) if c < 0 else 'exited with ' + str(c)}"
                            + (" (the source: the run ended there)" if n == source else "")
                            for n, c in sorted(failed.items()))
    report = write_report(out, grid, title, live=live, partial=partial)
    print("\n" + (out / "report.md").read_text())
    print(f"run folder: {out} (report.md, report.json, ledger.csv, frames.jsonl, {_pictures(out, grid)}logs/)")
    if failed:
        print(f"dyn-fusion {command}: nodes exited with errors: {failed} (see {out / 'logs'})")
        return 1
    return 1 if require_frames and not report.frames_fused else 0


def _pictures(out: Path, grid) -> str:
    """Draw the run's timeline and bird's-eye pictures (dyn_fusion.run_plots); "name, " for each
    drawn and for the recording, for the closing line. A picture that fails is reported, not fatal:
    the report is already written."""
    from dyn_fusion.run_plots import write_run_plots
    from ros_nodes.run_bag import RECORD_FOLDER

    try:
        drawn = [p.name for p in write_run_plots(out, grid)]
    except Exception as exc:
        print(f"dyn-fusion: the run's pictures were not drawn: {type(exc).__name__}: {exc}")
        drawn = []
    if (out / RECORD_FOLDER).is_dir():
        drawn.append(f"{RECORD_FOLDER}/")
    return "".join(f"{name}, " for name in drawn)


def up_command(args: argparse.Namespace) -> int:
    from fusion_core.data.static_tf import save_static_tf
    from sim.calibration import rig_calibration, rig_static_tf
    from sim.config import load_scenario, resolve_scenario

    if not args.duration_s > 0:
        raise ConfigError(f"--duration-s: must be > 0, got {args.duration_s}")
    scenario_path = resolve_scenario(args.scenario)
    scenario = load_scenario(scenario_path)
    overrides = _overrides(args.set, "vehicle")
    record = _record_overrides(args, _sim_mapping())  # checked before the run folder is touched
    grid = _report_grid(overrides)
    folder = _RunFolder(args.out, args.overwrite)
    # The rig's mounts, as /tf_static would carry them (tf2_msgs is not installable here).
    calibration = args.out / "calibration.yaml"
    with _restored_on_error(folder):
        save_static_tf(calibration, rig_static_tf(rig_calibration(scenario.sensors)))
    plan_overrides = {
        "sim_node": {"sim.scenario": str(scenario_path), "sim.duration_s": str(args.duration_s),
                     "sim.wait_for_subscribers_s": "30.0"},
        "fusion_node": {"fusion.calibration_file": str(calibration)},
        "energy_monitor": {"energy.run_dir": str(args.out), **record},
    }
    return _run_and_report("up", "vehicle", folder, plan_overrides, overrides, grid,
                           f"dyn-fusion up vehicle: {scenario.name}, {args.duration_s:g} s", live=True,
                           require_frames=True)


def _sim_mapping():
    """The simulator's topics (what sim_node publishes and fusion_node reads in ``up``)."""
    from fusion_core.data.topic_mapping import TopicMapping, resolve_topic_mapping

    return TopicMapping.load(resolve_topic_mapping("sim_bag"))


def _sync_overrides(mapping) -> dict[str, str]:
    """The mapping's tolerance (fusion_node takes the synchroniser's roles, pivot and fallbacks
    from the mapping itself)."""
    return {"sync.tolerance_s": repr(mapping.sync_tolerance_s.default_s), "sync.wait_for_nearest": "true",
            "sync.max_wait_s": repr(max(0.15, 3 * mapping.sync_tolerance_s.default_s))}


def _consumed_topics(mapping) -> str:
    """The topics the replay stack subscribes to (the mapped sensors and camera infos, the
    simulator's ground truth and labels), as a parameter value: the player waits for those only
    (nothing subscribes to /odom or /clock, so waiting for every topic would always time out)."""
    from fusion_core.data import topics as T
    from fusion_core.vocabulary import CAMERAS, SENSORS

    topics = [mapping.sensor_topic(s) for s in SENSORS]
    topics += [mapping.camera_info_topic(c) for c in CAMERAS]
    topics += [T.GT_MARKERS_TOPIC, T.LABELS_TOPIC]
    return "[" + ", ".join(f"'{t}'" for t in topics if t) + "]"


def _check_mapping_meets_bag(bag: Path, mapping, mapping_path: Path) -> None:
    """ConfigError when no sensor topic of the mapping is in the bag (the replay would fuse
    nothing and say only "0 frames"). A bag rosbags cannot open is left to the player's salvage,
    unless not one message can be salvaged: then it is the one-line error evaluate gives too."""
    from rosbags.highlevel import AnyReader

    from fusion_core.data.bag_metadata import reader_paths
    from fusion_core.data.bag_salvage import BagReadError, salvage
    from fusion_core.vocabulary import SENSORS

    try:  # (the storage files alone when metadata.yaml lies about a type, as the player reads them)
        with AnyReader(reader_paths(bag)) as reader:
            in_bag = {c.topic: c.msgtype for c in reader.connections}
    except Exception as refusal:  # AnyReader wraps storage errors in several types
        try:  # the salvage ends with BagReadError, so it raises at once only when it has nothing
            next(salvage(bag, f"{type(refusal).__name__}: {refusal}"))
        except BagReadError as exc:
            raise ConfigError(f"nothing to replay: {exc}") from None
        return
    mapped = {s: mapping.sensor_topic(s) for s in SENSORS if mapping.sensor_topic(s)}
    if not any(t in in_bag for t in mapped.values()):
        shown = ", ".join(sorted(in_bag)[:12]) + (" ..." if len(in_bag) > 12 else "")
        raise ConfigError(f"--topics {mapping_path}: none of its sensor topics ({', '.join(mapped.values())}) is in "
                          f"{bag} (its topics: {shown or 'none'}); write a mapping for it (configs/data/*.yaml)")


def _bag_static_tf(bag: Path, mapping):
    """The bag's static transforms; a damaged bag (which rosbags refuses to open) is read front
    to back by the player's salvaging reader and gives what precedes the damage."""
    from fusion_core.data.rosbag_source import read_static_tf
    from fusion_core.data.static_tf import StaticTfTree
    from ros_nodes import ros_io
    from ros_nodes.bag_messages import BagMessages, BagReadError

    try:
        return read_static_tf(bag, mapping)
    except Exception as exc:  # AnyReader wraps storage errors in several types
        print(f"[replay] {bag}: rosbags cannot open it ({type(exc).__name__}); reading /tf_static front to back")
    tree = StaticTfTree()
    with BagMessages(bag) as messages:
        try:
            for m in messages.messages():
                if m.topic == mapping.tf_static_topic and m.cdr is not None:
                    tree.add_message(ros_io.deserialize(m.cdr, m.msgtype))
        except BagReadError:
            pass  # the player reports where reading stopped
    return tree


def replay_command(args: argparse.Namespace) -> int:
    from fusion_core.data.static_tf import save_static_tf
    from fusion_core.data.topic_mapping import TopicMapping, resolve_topic_mapping

    if not args.bag.exists():
        raise FileNotFoundError(f"{args.bag}: no such bag")
    if not args.rate > 0:
        raise ConfigError(f"--rate: must be > 0, got {args.rate}")
    mapping_path = resolve_topic_mapping(args.topics)
    mapping = TopicMapping.load(mapping_path)
    _check_mapping_meets_bag(args.bag, mapping, mapping_path)
    overrides = _overrides(args.set, "replay")
    record = _record_overrides(args, mapping)  # checked before the run folder is touched
    grid = _report_grid(overrides)
    folder = _RunFolder(args.out, args.overwrite)
    calibration = args.out / "calibration.yaml"
    with _restored_on_error(folder):
        save_static_tf(calibration, _bag_static_tf(args.bag, mapping))  # tf2_msgs cannot be published here
    plan_overrides = {
        "bag_player": {"player.bag": str(args.bag.resolve()), "player.rate": repr(args.rate),
                       "player.wait_for_subscribers_s": "30.0",
                       "player.wait_for_topics": _consumed_topics(mapping)},
        # fusion_node reads the player's /clock: latencies from header stamps on the bag's clock
        "fusion_node": {"fusion.calibration_file": str(calibration), "fusion.topic_mapping": str(mapping_path),
                        "fusion.process_every_frame": "true", "use_sim_time": "true", **_sync_overrides(mapping)},
        "energy_monitor": {"energy.run_dir": str(args.out), **record},
    }
    return _run_and_report("replay", "replay", folder, plan_overrides, overrides, grid,
                           f"dyn-fusion replay: {args.bag.name} ({mapping_path.stem}, rate {args.rate:g})",
                           live=False, require_frames=False)
