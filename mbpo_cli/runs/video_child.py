"""The video child of `mbpo eval --video`: ``python -m mbpo_cli.runs.video_child REQUEST`` films one episode with the
rendering backend its environment names (``MUJOCO_GL``, ``PYOPENGL_PLATFORM``), or says that the backend cannot render.

REQUEST is the JSON object :func:`mbpo_cli.runs.video.record_video` makes (the task, the checkpoint, the seed, the
mode and the output file). Until its first frame is rendered this module imports nothing but the standard library,
gymnasium, the task (importing mujoco loads the backend) and what makes the task as the run made it (its config and
wrappers, no torch): a failure up to there is the backend's, reported on stderr after :data:`BACKEND_MARK` with exit
status :data:`BACKEND_EXIT` (a backend that fails costs about a second), or a missing package the task renders with
(gymnasium's ``DependencyNotInstalled``, not MuJoCo's), reported after :data:`DEPENDENCY_MARK` with
:data:`DEPENDENCY_EXIT`. Then :func:`mbpo_cli.runs.video.film` loads the policy and films
the episode, printing its JSON report on stdout.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import traceback
import warnings
from typing import Any, NoReturn

BACKEND_EXIT = 3
"""Exit status of the video child process when the rendering backend does not work."""
BACKEND_MARK = "mbpo-video-backend-failed: "
"""Starts the video child's last stderr line when it exits with :data:`BACKEND_EXIT` (followed by the error)."""
DEPENDENCY_EXIT = 4
"""Exit status of the video child process when the environment lacks a package it renders with (not MuJoCo's)."""
DEPENDENCY_MARK = "mbpo-video-dependency-missing: "
"""Starts the video child's last stderr line when it exits with :data:`DEPENDENCY_EXIT` (followed by gymnasium's
message, e.g. ``pygame is not installed, ...``)."""


def first_frame(request: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The task made for rendering as the run made it (``request["env"]``: an EnvConfig as a dict; the package of its
    namespace imported, inside the run's ``env.wrappers``, a Dict or Tuple observation flattened), its observation
    after a reset seeded ``request["seed"]``, and that state's frame (``H x W x 3``)."""
    import gymnasium as gym
    import numpy as np

    from mbpo_cli.config.validation import build_config
    from mbpo_cli.engine.env_ids import register_namespace
    from mbpo_cli.engine.env_wrappers import wrapped

    env_config = request["env"]
    register_namespace(env_config["id"], render=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_config["id"], render_mode="rgb_array", **env_config["kwargs"])
        env = wrapped(env, build_config(request["config"], "video").env)
    obs, _ = env.reset(seed=request["seed"])
    frame: Any = env.render()
    if frame is None or np.ndim(frame) != 3:
        raise RuntimeError("the environment rendered no RGB frame")
    return env, obs, frame


def cannot_render(err: Exception) -> NoReturn:
    """Exit after a failure before the first frame: a package the task renders with is missing (pygame), or else
    the backend cannot render here (MuJoCo's own, whose import loads the OpenGL backend, included)."""
    traceback.print_exc()
    line = (str(err).strip().splitlines() or [""])[0]
    causes: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__
    mujoco = "mujoco" in line.lower() or any(
        (getattr(c, "name", None) or "").split(".")[0] in ("mujoco", "OpenGL") for c in causes)
    if type(err).__name__ == "DependencyNotInstalled" and not mujoco:
        print(DEPENDENCY_MARK + line, file=sys.stderr)
        sys.exit(DEPENDENCY_EXIT)
    print(BACKEND_MARK + type(err).__name__ + ": " + line, file=sys.stderr)
    sys.exit(BACKEND_EXIT)


def main(argv: list[str]) -> None:
    """Film the episode `argv[1]` asks for (see the module)."""
    faulthandler.enable()  # a backend that crashes the process still leaves the Python stack on stderr (--debug)
    request = json.loads(argv[1])
    try:
        env, obs, frame = first_frame(request)
    except Exception as err:
        cannot_render(err)
    from mbpo_cli.runs.video import film  # torch and the policy: only once the backend has rendered

    try:
        film(env, obs, frame, request)
    finally:
        env.close()


if __name__ == "__main__":
    main(sys.argv)
