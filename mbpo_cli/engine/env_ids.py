"""Environment ids as gymnasium resolves them, and what must be imported first for them to resolve.

`module:EnvId` imports `module` (the working directory importable, as for custom functions), which registers
`EnvId`. A namespaced id (`dm_control/cartpole-swingup-v0`) needs its namespace registered: gymnasium itself imports
nothing for it, so the package that registers a known namespace is imported here (shimmy for `dm_control`), and an id
whose namespace is still unknown is a one-line EnvError naming the package to install.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import gymnasium as gym
from gymnasium.envs.registration import parse_env_id

from mbpo_cli.engine.errors import EnvError


@dataclass(frozen=True)
class NamespacePackage:
    """The package that registers a gymnasium namespace when imported."""

    module: str
    """What to import."""
    needs: str
    """The packages that must be installed, in words."""
    install: str
    """The command that installs them."""


NAMESPACE_PACKAGES: dict[str, NamespacePackage] = {
    "dm_control": NamespacePackage("shimmy", "shimmy and dm_control", "pip install 'mbpo-cli[dmc]'"),
    "bsuite": NamespacePackage("shimmy", "shimmy and bsuite", "pip install 'shimmy[bsuite]'"),
    "ALE": NamespacePackage("ale_py", "ale-py", "pip install ale-py"),
}
"""Namespaces whose package is imported when an id names them (as `import shimmy` registers `dm_control/...`)."""


@contextlib.contextmanager
def rendering_disabled() -> Iterator[None]:
    """``MUJOCO_GL=disable`` for the duration, as it was afterwards: what MuJoCo and dm_control read when imported
    (training and evaluation never render; a backend that cannot load here would fail the import)."""
    saved = os.environ.get("MUJOCO_GL")
    os.environ["MUJOCO_GL"] = "disable"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MUJOCO_GL", None)
        else:
            os.environ["MUJOCO_GL"] = saved


def namespace_of(env_id: str) -> str | None:
    """The gymnasium namespace of `env_id` (`dm_control` of `dm_control/cartpole-swingup-v0`, after a `module:`
    prefix), or None."""
    try:
        namespace, _, _ = parse_env_id(env_id.partition(":")[2] or env_id)
    except gym.error.Error:  # a malformed id: gymnasium's own error says so when it is made
        return None
    return namespace


def registered_namespaces() -> set[str]:
    """The namespaces of gymnasium's registry now."""
    return {spec.namespace for spec in gym.registry.values() if spec.namespace is not None}


def register_namespace(env_id: str, render: bool = False) -> None:
    """Make the namespace of `env_id` known to gymnasium, importing the package of a known namespace (with rendering
    disabled unless `render`); an EnvError naming the package to install when the namespace stays unknown."""
    namespace = namespace_of(env_id)
    if namespace is None or namespace in registered_namespaces():
        return
    package = NAMESPACE_PACKAGES.get(namespace)
    if package is not None:
        with contextlib.suppress(ImportError), (contextlib.nullcontext() if render else rendering_disabled()):
            importlib.import_module(package.module)
        if namespace in registered_namespaces():
            return
        raise EnvError(f"environment '{env_id}': the {namespace} namespace needs {package.needs}: {package.install}")
    close = difflib.get_close_matches(namespace, sorted(registered_namespaces() | set(NAMESPACE_PACKAGES)), n=1)
    hint = f"did you mean {close[0]}? Otherwise " if close else ""
    raise EnvError(f"environment '{env_id}': namespace {namespace!r} is not registered: {hint}install the package "
                   f"that registers it and name its module, as in --env PACKAGE:{env_id.partition(':')[2] or env_id}")
