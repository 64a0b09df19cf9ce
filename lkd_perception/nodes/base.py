"""What every lkd_perception node shares: typed parameters, QoS, guarded callbacks, diagnostics.

Parameters are declared from the core's config dataclasses (one name per setting), each with
a descriptor carrying its description, range and read-only flag, so ``ros2 param describe``
tells a user what a setting does and the middleware rejects out-of-range values.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Sequence, TypeVar

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rcl_interfaces.msg import ParameterType as PT
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter

from lkd_perception.common.config import ParamSpec, coerce_value, describe, from_dict, unknown_settings, updated
from lkd_perception.common.errors import ConfigError, LkdError
from lkd_perception.common.heap import can_release_free_heap, release_free_heap
from lkd_perception.common.node_io import NodeIOConfig
from lkd_perception.io.topics import IMAGE
from lkd_perception.nodes import qos as qos_profiles
from lkd_perception.nodes.dds import explain_node_error, use_dds_profile
from lkd_perception.nodes.diagnostics import DiagnosticsReporter

C = TypeVar("C")

_INT_MAX = 2**62
_FLOAT_MAX = sys.float_info.max


def _ros_type(spec: ParamSpec) -> int:
    if spec.type is bool:
        return PT.PARAMETER_BOOL
    if spec.type is int:
        return PT.PARAMETER_INTEGER
    if spec.type is float:
        return PT.PARAMETER_DOUBLE
    if spec.type is str:
        return PT.PARAMETER_STRING
    return {
        float: PT.PARAMETER_DOUBLE_ARRAY,
        int: PT.PARAMETER_INTEGER_ARRAY,
        str: PT.PARAMETER_STRING_ARRAY,
        bool: PT.PARAMETER_BOOL_ARRAY,
    }[spec.element_type or float]


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS parameter descriptor of one config field."""
    d = ParameterDescriptor(
        name=spec.name, type=_ros_type(spec), description=spec.description, read_only=spec.read_only
    )
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.lo is not None or spec.hi is not None:
        if spec.type is int:
            d.integer_range = [
                IntegerRange(
                    from_value=int(spec.lo if spec.lo is not None else -_INT_MAX),
                    to_value=int(spec.hi if spec.hi is not None else _INT_MAX),
                    step=0,
                )
            ]
        elif spec.type is float:
            d.floating_point_range = [
                FloatingPointRange(
                    from_value=float(spec.lo if spec.lo is not None else -_FLOAT_MAX),
                    to_value=float(spec.hi if spec.hi is not None else _FLOAT_MAX),
                    step=0.0,
                )
            ]
    return d


class _StartsAfterConstruction(type):
    """Runs ``autostart`` once the whole constructor chain (the subclass's included) has run, so
    that ``DetectorNode()`` is a working node, as before nodes had a lifecycle."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        node = super().__call__(*args, **kwargs)
        node._autostart()
        return node


class LkdNode(LifecycleNode, metaclass=_StartsAfterConstruction):
    """Base class of the product's nodes: a managed (lifecycle) node.

    The constructor declares parameters and starts /diagnostics, which reports in every state.
    A subclass puts its heavy loading (model, TensorRT engine, odometry pipeline) and its
    outputs in :meth:`configure`: publishers created there are lifecycle publishers (they
    publish only while active), subscriptions created there exist only while active (created by
    activate, destroyed by deactivate), and cleanup destroys both and calls :meth:`release`.
    A configure that raises an :class:`LkdError` (a missing model) fails the transition; the node
    stays unconfigured, reports the error on /diagnostics and can be configured again.
    With the ``autostart`` parameter (default) the node configures and activates itself as soon as
    it is constructed.
    """

    def __init__(self, node_name: str, **node_kwargs: Any) -> None:
        self._configuring = False
        self._deferred_subscriptions: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self._active_subscriptions: list[Any] = []
        self._configured_publishers: list[Any] = []
        self._configured_timers: list[Any] = []
        self._problem_timer = None
        self.model_error = ""
        super().__init__(node_name, **node_kwargs)
        self._configs: dict[type, tuple[dict[str, ParamSpec], Callable[[Any], None] | None]] = {}
        self._config_values: dict[type, Any] = {}
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.io_config = self.declare_config(NodeIOConfig)
        self.diagnostics = DiagnosticsReporter(self, period_s=self.io_config.diagnostics_period_s)
        # freed memory stays in glibc's arenas otherwise and resident memory creeps up (common/heap.py);
        # on the steady clock, so it runs whether or not sim time advances
        self._heap_timer = None
        if self.io_config.heap_trim_period_s > 0 and can_release_free_heap():
            self._heap_timer = self.create_timer(
                self.io_config.heap_trim_period_s, release_free_heap, clock=Clock(clock_type=ClockType.STEADY_TIME)
            )

    # -- lifecycle ----------------------------------------------------------------------------
    def configure(self) -> None:
        """Load what the node needs and create its outputs (subclasses; see the class docstring)."""

    def release(self) -> None:
        """Drop what :meth:`configure` loaded (subclasses), on cleanup and shutdown."""

    def create_publisher(self, msg_type: Any, topic: str, qos_profile: Any, **kwargs: Any) -> Any:
        """While configuring: a lifecycle publisher, quiet unless active and destroyed on cleanup.
        Otherwise (``/diagnostics``, made in the constructor): a plain one, heard in every state."""
        if self._configuring:
            pub = self.create_lifecycle_publisher(msg_type, topic, qos_profile, **kwargs)
            self._configured_publishers.append(pub)
            return pub
        return super().create_publisher(msg_type, topic, qos_profile, **kwargs)

    def create_subscription(self, msg_type: Any, topic: str, callback: Any, qos_profile: Any, **kwargs: Any) -> Any:
        """While configuring: recorded and created on each activate, destroyed on deactivate, so an
        inactive node takes no input (returns None: there is no subscription yet)."""
        if self._configuring:
            self._deferred_subscriptions.append(((msg_type, topic, callback, qos_profile), kwargs))
            return None
        return super().create_subscription(msg_type, topic, callback, qos_profile, **kwargs)

    def create_timer(self, *args: Any, **kwargs: Any) -> Any:
        """While configuring: destroyed again on cleanup, with what configure made."""
        timer = super().create_timer(*args, **kwargs)
        if self._configuring:
            self._configured_timers.append(timer)
        return timer

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._configuring = True
        try:
            self.configure()
        except LkdError as exc:
            self._configure_failed(str(exc))
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it without a word
            self._configure_failed(f"unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        finally:
            self._configuring = False
        if self._problem_timer is not None:
            self.destroy_timer(self._problem_timer)
            self._problem_timer = None
        self.model_error = ""
        self.get_logger().info("configured")
        return super().on_configure(state)

    def _configure_failed(self, message: str) -> None:
        """Log, report on /diagnostics until a configure succeeds, and undo the partial configure."""
        self.model_error = message
        self.get_logger().error(f"configure failed, publishing nothing: {message}")
        self._teardown()
        self.diagnostics.error("model", message)
        if self._problem_timer is None:
            self._problem_timer = super().create_timer(
                self.io_config.diagnostics_period_s, lambda: self.diagnostics.error("model", self.model_error)
            )

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for args, kwargs in self._deferred_subscriptions:
            self._active_subscriptions.append(super().create_subscription(*args, **kwargs))
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_shutdown(state)

    def _unsubscribe(self) -> None:
        for sub in self._active_subscriptions:
            self.destroy_subscription(sub)
        self._active_subscriptions = []

    def _teardown(self) -> None:
        self._unsubscribe()
        self._deferred_subscriptions = []
        for pub in self._configured_publishers:
            self.destroy_lifecycle_publisher(pub)
        for timer in self._configured_timers:
            self.destroy_timer(timer)
        self._configured_publishers, self._configured_timers = [], []
        self.release()

    def _autostart(self) -> None:
        self._warn_unknown_parameters()
        if self.io_config.autostart and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # -- parameters ---------------------------------------------------------------------------
    def _warn_unknown_parameters(self) -> None:
        """Say which parameters the file or command line set that this node does not have (rcl
        drops them silently: a typo, or a name from before a rename, would leave its default)."""
        given = [n for n in self._parameter_overrides if not n.startswith("qos_overrides.")]
        self.unknown_parameters = unknown_settings(given, self._parameters)
        for name, close in self.unknown_parameters.items():
            hint = f"; did you mean {close!r}?" if close else ""
            self.get_logger().warning(f"parameter {name!r} is not a parameter of this node and is ignored{hint} "
                                      f"(`lkd config defaults` lists every parameter)")

    def declare_config(self, cls: type[C], on_change: Callable[[C], None] | None = None) -> C:
        """Declare one parameter per field of ``cls`` and return the validated config.

        A nested config (a :func:`~lkd_perception.common.config.section`) gives dotted parameters
        (``loop.min_age_s``), which rcl fills from a nested mapping of the parameter file.
        Values come from the parameter file / overrides; invalid ones are logged and the node
        falls back to the field's default rather than refusing to start. Without ``on_change``
        the settings are fixed after start-up and a runtime change is rejected with a reason.
        """
        specs = {s.name: s for s in describe(cls)}
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            try:
                p = self.declare_parameter(name, spec.default, descriptor(spec))
                values[name] = coerce_value(spec, p.value, cls.__name__)
            except (ConfigError, rclpy.exceptions.InvalidParameterValueException,
                    rclpy.exceptions.InvalidParameterTypeException) as exc:
                self.get_logger().error(f"parameter {name}: {exc}; using default {spec.default!r}")
                values[name] = spec.default
        cfg = from_dict(cls, values)
        self._configs[cls] = (specs, on_change)
        self._config_values[cls] = cfg
        self.get_logger().debug(f"{cls.__name__}: {values}")
        return cfg

    def config(self, cls: type[C]) -> C:
        """The current value of a declared config."""
        return self._config_values[cls]

    def _validate_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        updates: dict[type, dict[str, Any]] = {}
        for p in params:
            for cls, (specs, on_change) in self._configs.items():
                if p.name not in specs:
                    continue
                if on_change is None:
                    return SetParametersResult(successful=False, reason=f"{p.name} takes effect only at start-up")
                try:
                    updates.setdefault(cls, {})[p.name] = coerce_value(specs[p.name], p.value, cls.__name__)
                except ConfigError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        for cls, changed in updates.items():
            new_cfg = updated(self._config_values[cls], changed)
            self._config_values[cls] = new_cfg
            on_change = self._configs[cls][1]
            assert on_change is not None
            on_change(new_cfg)
        return SetParametersResult(successful=True)

    # -- QoS ----------------------------------------------------------------------------------
    def subscribe_camera(self, transport: str, callback: Callable[[Any], None]) -> None:
        """Subscribe the camera: ``sensor_msgs/Image`` on ``camera/image_raw`` (``raw``), or
        ``sensor_msgs/CompressedImage`` on the resolved image topic + ``/compressed`` (``compressed``:
        image_transport's convention, so remapping ``camera/image_raw`` moves both)."""
        from sensor_msgs.msg import CompressedImage, Image

        if transport == "compressed":
            topic = self.resolve_topic_name(IMAGE.name) + "/compressed"
            self.create_subscription(CompressedImage, topic, callback, self.sensor_qos())
        else:
            self.create_subscription(Image, IMAGE.name, callback, self.sensor_qos())

    def sensor_qos(self):
        """QoS of sensor subscriptions, from the ``sensor_qos_*`` parameters."""
        return qos_profiles.sensor_qos(self.io_config.sensor_qos_reliability, self.io_config.sensor_qos_depth)

    def output_qos(self, depth: int = 10):
        return qos_profiles.output_qos(depth)

    # -- callbacks ----------------------------------------------------------------------------
    def guarded(self, task: str, fn: Callable[[Any], Any]) -> Callable[[Any], None]:
        """Wrap a callback so that it is timed into diagnostics and can never kill the node.

        Deliberate errors (bad input, missing model) are warnings with their message; anything
        else is a bug, logged with its traceback as an error. Either way the next message is
        processed normally.
        """

        def wrapper(msg: Any) -> None:
            t0 = time.perf_counter()
            try:
                fn(msg)
            except LkdError as exc:
                self.get_logger().warning(f"{task}: {exc}", throttle_duration_sec=1.0)
                self.diagnostics.warn(task, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - a node must survive its own bugs
                if not self.context.ok():
                    # shutdown (SIGINT) arrived while this callback ran: its publish fails
                    # because the context is gone, which is the end of the node, not a bug
                    return
                self.get_logger().error(f"{task}: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                self.diagnostics.error(task, f"{type(exc).__name__}: {exc}")
                return
            self.diagnostics.record(task, time.perf_counter() - t0)

        return wrapper


def spin_until_shutdown(executor: Executor) -> None:
    """Spin until the context shuts down (Ctrl-C, SIGTERM, ``rclpy.shutdown``), quietly.

    rclpy's signal handler shuts the context down from another thread, so the executor can be
    between two steps when it happens: building its next wait set then fails with an RCLError
    about an invalid context. That is how the node stops, not a fault worth a traceback; the
    same error while the context is still valid is one, and is raised.
    """
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if executor.context.ok():
            raise


class SigintWhileSpinning:
    """Ctrl-C ends a spinning process through rclpy alone, never as a KeyboardInterrupt.

    ``rclpy.init`` installs a SIGINT handler that shuts the context down (so the spin ends) and
    then calls the Python handler installed before it, by default the one that raises
    KeyboardInterrupt. That exception lands at whatever bytecode runs, once in a while inside
    rclpy's ``Task`` constructor, whose half-built object then prints a traceback from its
    ``__del__`` at exit (seen in the Ctrl-C test). Entered before ``rclpy.init``, this installs a
    handler that raises only until :attr:`spinning` is set, so a long start (a model load, a
    TensorRT engine build) can still be interrupted; the previous handler is back on exit.
    """

    def __init__(self) -> None:
        self.spinning = False
        self._previous: Any = None

    def __enter__(self) -> "SigintWhileSpinning":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum: int, frame: object) -> None:
        if not self.spinning:
            raise KeyboardInterrupt


def run_node(node_cls: Callable[..., Node], args: Sequence[str] | None = None) -> None:
    """Entry point body of a node executable: init, spin until shutdown, clean up."""
    use_dds_profile()
    with SigintWhileSpinning() as sigint:
        rclpy.init(args=args)
        node = None
        try:
            try:
                node = node_cls()
            except RCLError as exc:
                if (reason := explain_node_error(exc)) is None:
                    raise
                print(f"{node_cls.__name__}: error: {reason}", file=sys.stderr)
                raise SystemExit(2) from None
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            sigint.spinning = True
            spin_until_shutdown(executor)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
