"""The demo trainer: REINFORCE with a learned baseline on CartPole-v1, in numpy, on one CPU core.

    python -m metta_exp.examples.cartpole trainer.learning_rate=0.01 trainer.total_timesteps=20000

Overrides (``key=value``, each at most once; anything else is an error, exit code 2):

    trainer.learning_rate   float > 0, default 0.03   Adam step size of the policy
    trainer.total_timesteps int > 0, default 30000    environment steps to train for
    trainer.seed            int >= 0, default 0
    trainer.batch_steps     int > 0, default 500      steps per update (whole episodes, at least this many)
    trainer.gamma           float in (0, 1], default 0.99
    trainer.fail_at_step    int >= 0, default none    raise RuntimeError at that step (to test failures)

The policy is a linear softmax over the 4 observations; the baseline is a linear value function of the
observation and the time step, fitted by least squares on each batch and used on the next. Every batch
is reported through :mod:`metta_exp.tracking` (``overview/reward``, ``overview/sps``, ``trainer/loss``,
``trainer/entropy``, ``trainer/episode_length``); the final weights go to ``checkpoint.npz`` in the run
directory.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from metta_exp.examples.overrides import (
    example_main,
    int_at_least,
    parse_key_values,
    positive_float,
)

PROG = "metta_exp.examples.cartpole"
MAX_EPISODE_STEPS = 500  # CartPole-v1's time limit; the baseline sees t / MAX_EPISODE_STEPS
OBS_SIZE = 4  # cart position and velocity, pole angle and angular velocity
N_ACTIONS = 2  # push left, push right


@dataclass(frozen=True)
class Settings:
    learning_rate: float = 0.03
    total_timesteps: int = 30000
    seed: int = 0
    batch_steps: int = 500
    gamma: float = 0.99
    fail_at_step: int | None = None


def _discount(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError("must be in (0, 1]")
    return value


KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "trainer.learning_rate": ("learning_rate", positive_float),
    "trainer.total_timesteps": ("total_timesteps", int_at_least(1)),
    "trainer.seed": ("seed", int_at_least(0)),
    "trainer.batch_steps": ("batch_steps", int_at_least(1)),
    "trainer.gamma": ("gamma", _discount),
    "trainer.fail_at_step": ("fail_at_step", int_at_least(0)),
}
assert {name for name, _ in KEYS.values()} == {f.name for f in fields(Settings)}


def parse_overrides(args: Sequence[str]) -> Settings:
    """Settings from ``trainer.KEY=VALUE`` args; UsageError naming the first bad one.

    As with Hydra overrides, a key given again wins: metta-exp appends command-line overrides after the
    experiment's own args, so ``metta-exp +experiment=demo trainer.total_timesteps=5000`` takes effect.
    """
    return replace(Settings(), **parse_key_values(args, KEYS, "trainer.learning_rate=0.01", plus=False))


class Learner:
    """A linear softmax policy trained with Adam, and a linear least-squares baseline."""

    def __init__(self, settings: Settings, obs_size: int, n_actions: int) -> None:
        import numpy as np

        self.np = np
        self.settings = settings
        self.weights = np.zeros((obs_size + 1, n_actions))  # last row: bias
        self.value = np.zeros(2 * obs_size + 2)
        self._m = np.zeros_like(self.weights)
        self._v = np.zeros_like(self.weights)
        self._t = 0

    def probs(self, obs: Any) -> Any:
        np = self.np
        logits = obs @ self.weights[:-1] + self.weights[-1]
        logits = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)

    def _value_features(self, obs: Any, t: Any) -> Any:
        np = self.np
        elapsed = (t / MAX_EPISODE_STEPS)[:, None]
        return np.hstack([obs, obs**2, elapsed, np.ones_like(elapsed)])

    def update(self, obs: Any, actions: Any, returns: Any, t: Any) -> tuple[float, float]:
        """One policy-gradient step on a batch; returns (policy loss, mean entropy)."""
        np = self.np
        features = self._value_features(obs, t)
        advantages = returns - features @ self.value
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        probs = self.probs(obs)
        logp = np.log(probs[np.arange(len(actions)), actions] + 1e-12)
        loss = float(-(logp * advantages).mean())
        entropy = float(-(probs * np.log(probs + 1e-12)).sum(axis=1).mean())
        # d(-loss)/dlogits = (onehot(a) - p) * adv, averaged over the batch
        dlogits = -probs
        dlogits[np.arange(len(actions)), actions] += 1.0
        dlogits *= advantages[:, None] / len(actions)
        grad = np.vstack([obs.T @ dlogits, dlogits.sum(axis=0)])
        self._adam_ascend(grad)
        ridge = 1e-3 * np.eye(features.shape[1])
        self.value = np.linalg.solve(features.T @ features + ridge, features.T @ returns)
        return loss, entropy

    def _adam_ascend(self, grad: Any, beta1: float = 0.9, beta2: float = 0.999) -> None:
        np = self.np
        self._t += 1
        self._m = beta1 * self._m + (1 - beta1) * grad
        self._v = beta2 * self._v + (1 - beta2) * grad**2
        m_hat = self._m / (1 - beta1**self._t)
        v_hat = self._v / (1 - beta2**self._t)
        self.weights += self.settings.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)


@dataclass
class Batch:
    obs: list[Any]
    actions: list[int]
    returns: list[float]
    times: list[int]
    episode_returns: list[float]
    episode_lengths: list[int]


def collect(env: Any, learner: Learner, rng: Any, budget: int, start_step: int) -> Batch:
    """Whole episodes until at least ``settings.batch_steps`` steps, never past ``budget`` steps.

    An episode cut by the budget is kept with the returns it had (the last batch only).
    """
    settings = learner.settings
    batch = Batch([], [], [], [], [], [])
    steps = 0
    while steps < min(settings.batch_steps, budget):
        obs, _ = env.reset()
        rewards: list[float] = []
        done = False
        while not done and steps < budget:
            if settings.fail_at_step is not None and start_step + steps == settings.fail_at_step:
                raise RuntimeError(f"trainer.fail_at_step={settings.fail_at_step}: failing on purpose")
            p = learner.probs(obs)
            action = int(rng.random() < p[1])
            batch.obs.append(obs)
            batch.actions.append(action)
            batch.times.append(len(rewards))
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            steps += 1
            done = terminated or truncated
        running = 0.0
        to_go = []  # discounted return from each step to the end of the episode
        for reward in reversed(rewards):
            running = reward + settings.gamma * running
            to_go.append(running)
        batch.returns.extend(reversed(to_go))
        if done:
            batch.episode_returns.append(sum(rewards))
            batch.episode_lengths.append(len(rewards))
    return batch


def train(settings: Settings) -> Path:
    """Train, reporting every batch; returns the checkpoint path."""
    import gymnasium as gym
    import numpy as np

    from metta_exp import tracking

    env = gym.make("CartPole-v1")
    env.reset(seed=settings.seed)
    env.action_space.seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    learner = Learner(settings, OBS_SIZE, N_ACTIONS)
    config = {f"trainer.{f.name}": getattr(settings, f.name) for f in fields(settings)}
    with tracking.init(total_steps=settings.total_timesteps, config=config) as run:
        print(
            f"[cartpole] learning_rate={settings.learning_rate:g} total_timesteps={settings.total_timesteps} "
            f"seed={settings.seed} batch_steps={settings.batch_steps} gamma={settings.gamma:g} "
            f"run_dir={run.run_dir}",
            flush=True,
        )
        step = 0
        while step < settings.total_timesteps:
            started = time.perf_counter()
            batch = collect(env, learner, rng, settings.total_timesteps - step, step)
            obs = np.asarray(batch.obs)
            loss, entropy = learner.update(
                obs, np.asarray(batch.actions), np.asarray(batch.returns), np.asarray(batch.times, float)
            )
            step += len(batch.actions)
            metrics = {
                "overview/sps": len(batch.actions) / (time.perf_counter() - started),
                "trainer/loss": loss,
                "trainer/entropy": entropy,
            }
            if batch.episode_returns:
                metrics["overview/reward"] = float(np.mean(batch.episode_returns))
                metrics["trainer/episode_length"] = float(np.mean(batch.episode_lengths))
            run.log(metrics, step=step)
        path = run.run_dir / "checkpoint.npz"
        np.savez(path, policy=learner.weights, value=learner.value, step=step)
        run.checkpoint(path)
    env.close()
    return path


def main(argv: Sequence[str] | None = None) -> int:
    return example_main(argv, __doc__, PROG, lambda args: train(parse_overrides(args)))


if __name__ == "__main__":
    sys.exit(main())
