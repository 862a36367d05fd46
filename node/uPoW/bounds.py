"""How far honest AdamW training can take a state, per coordinate (DESIGN.md §2, "one
unit can do bounded harm"): the reach of the parameters after s steps from the round's
model, and the optimizer moments a real state at step s can hold.

A checkpoint outside these bounds is no state of the unit (replay refuses it), and a
delta is clipped to the H-step reach before the round's mean.  Everything here is
float64 arithmetic on the host built from + - * / and sqrt, each rounded alone (numpy,
and one numba loop with fastmath off): IEEE, correctly rounded, the same bits on every
node.  Powers are repeated products, never libm's pow.

Derivation (one coordinate; kernels/optim.py, the trainer's step).  The gradient g_t is
clipped to global norm C first, so |g_t| <= G = C (1 + slack for the float32 norm).
With m_0 = v_0 = 0, b1, b2 the float32 betas:
    m_t = (1-b1) sum_{j<t} b1^j g_{t-j},   v_t = (1-b2) sum_{j<t} b2^j g_{t-j}^2,
so |m_t| <= (1-b1^t) G and 0 <= v_t <= (1-b2^t) G^2 (convex combinations), and by
Cauchy–Schwarz on sum (b1/sqrt b2)^j * (sqrt b2^j g):
    |m_t| <= K_t sqrt(v_t),   K_t = (1-b1) sqrt(S_t / (1-b2)),  S_t = sum_{j<t} (b1^2/b2)^j.
The bound is inductive (K_{t+1}^2 = (b1^2/b2) K_t^2 + (1-b1)^2/(1-b2)), so a state that
satisfies it at step s keeps satisfying it.  The update u_t = (m_t/c1)/(sqrt(v_t/c2) + eps),
with c1, c2 the kernel's float32 bias corrections, obeys |u_t| <= A_t = K_t sqrt(c2)/c1.
The parameter step is theta_t = a_t theta_{t-1} - lr_t u_t with a_t = 1 - lr_t wd (wd = 0
for tensors without decay) and lr_t the schedule's rate for the step (node/uPoW/schedule.py:
a function of the unit's global step, which its checkpoint's data cursor fixes), so
    |theta_s - theta_0| <= |prod_t a_t - 1| |theta_0| + sum_{t<=s} lr_t A_t prod_{j>t} |a_j|.
Float32 slack, each generous against the few roundings per step it stands for:
m, v and u grow by (1 + 2^-16) per step (256 ulps); the parameter update rounds by
2^-20 (16 ulps) of the magnitudes it touches per step; results in the subnormal range
err by at most 2^-150 per operation, allowed as 2^-146 per step.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from kernels.fp import kernel
from kernels.optim import NORM_CHUNK
from node.types.genesis import ModelConfig, TrainingConfig
from node.uPoW.model import ParameterLayout
from node.uPoW.schedule import learning_rate
from node.uPoW.state import TrainingState

ROUNDING = 2.0 ** -24  # float32's unit roundoff
STEP_SLACK = 2.0 ** -16  # relative growth allowed per step in m, v and the update
PARAM_SLACK = 2.0 ** -20  # relative rounding allowed per step in the parameter update
UNDERFLOW = 2.0 ** -146  # absolute error allowed per step for subnormal results
SQRT_UNDERFLOW = 2.0 ** -72  # covers sqrt(UNDERFLOW) (2^-73): the same through sqrt(v)
DELTA_ROUNDING = 2.0 ** -21  # a delta's float32 subtraction, then the limit's own rounding


def _f32(value: float) -> float:
    """The float32 the kernels use for a genesis value, as a float64 (exactly)."""
    return float(np.float32(value))


class AdamSeries:
    """Per AdamW step t (from fresh moments at t = 0): the bound A_t on the update with its
    float32 slack, K_t, and the slack factor on m and v.  Computed in order up to the
    step where every term has stopped changing (the float32 powers of beta underflow,
    the series converges or overflows, the slack reaches its cap), and constant beyond,
    so a unit far along a miner's carried moments costs no more to bound than an early one.

    The slack of m and v: each step's rounding is within a relative STEP_SLACK, and an
    exponential average forgets: if |x_{t-1}| <= X (1 + e) then |x_t| <= X (1 + e') with
    e' the fixed point of e' = beta e + STEP_SLACK, below STEP_SLACK / (1 - beta).  So the
    factor is (1 + STEP_SLACK)^t up to that cap, and the absolute subnormal errors sum to
    at most min(t, 1 / (1 - beta)) times UNDERFLOW."""

    def __init__(self, training: TrainingConfig):
        b1, b2 = _f32(training.adam_beta1), _f32(training.adam_beta2)
        eps = _f32(training.adam_eps)
        ratio = b1 * b1 / b2
        forget = max(b1, b2)
        self._cap = 1.0 + STEP_SLACK / (1.0 - forget)
        self._memory = math.ceil(1.0 / (1.0 - forget))  # steps whose errors still count
        p1 = p2 = np.float32(1.0)
        series, growth = 0.0, 1.0
        self._update, self._k, self._growth = [math.nan], [0.0], [1.0]  # index t
        t = 0
        while True:
            t += 1
            before = (p1, p2, series, growth)
            p1, p2 = np.float32(p1 * np.float32(b1)), np.float32(p2 * np.float32(b2))
            c1, c2 = float(np.float32(1.0) - p1), float(np.float32(1.0) - p2)  # as the kernel
            series = 1.0 + ratio * series
            k = (1.0 - b1) * math.sqrt(series / (1.0 - b2))
            growth = min(growth * (1.0 + STEP_SLACK), self._cap)
            if c1 == 0.0:
                update = math.inf  # a beta1 that rounds to 1: no bound
            else:
                steps = self.effective_steps(t)
                underflow = (k * math.sqrt(steps) * SQRT_UNDERFLOW + steps * UNDERFLOW) / (c1 * eps)
                update = growth * k * math.sqrt(c2) / c1 + underflow
            self._update.append(update)
            self._k.append(k)
            self._growth.append(growth)
            if t > self._memory and before == (p1, p2, series, growth):
                break
        self.b1, self.b2 = b1, b2

    def effective_steps(self, t: int) -> int:
        """How many steps' absolute errors can still add up at step t."""
        return min(t, self._memory)

    def _at(self, values: list[float], t: int) -> float:
        return values[min(t, len(values) - 1)]

    def update(self, t: int) -> float:
        """A_t with slack: no AdamW update of step t moves a parameter more than this times the rate."""
        return self._at(self._update, t)

    def k(self, t: int) -> float:
        return self._at(self._k, t)

    def growth(self, t: int) -> float:
        return self._at(self._growth, t)

    @property
    def converged(self) -> int:
        """The step from which every term is constant."""
        return len(self._update) - 1

    def update_sup(self) -> float:
        """The largest A_t over every step."""
        return max(self._update[1:])

    def power_gap(self, beta: float, t: int) -> float:
        """1 - beta^t in float64 (beta^t by repeated products, and 0 once it underflows)."""
        return 1.0 - _power(beta, min(t, self.converged + 1))


class StepLimits:
    """The limits on a state s honest steps from a start at global step first (whose
    rates the schedule sets) and AdamW step adam_first (fresh moments at 0, or moments
    carried from a miner's earlier units).  Parameters: within reach_scale * |theta_0| +
    reach_offset of theta_0, per decay class (decayed, not).  Moments: |m| <= m_max,
    0 <= v <= v_max, |m| <= m_per_sqrt_v * sqrt(v) + m_floor."""

    def __init__(self, training: TrainingConfig, norm_length: int, steps: int, first: int = 0,
                 adam_first: int | None = 0):
        series = adam_series(training)
        # each step's rate, as the trainer's float32
        self.rates = tuple(float(learning_rate(training, first + t)) for t in range(steps))
        # the clipped gradient: the float32 norm sums at most norm_length terms in a row
        g_max = _f32(training.grad_clip) * (1.0 + 4.0 * (norm_length + 8) * ROUNDING)
        self.steps = steps
        if adam_first is None:  # any start: a carried unit's update may be the largest
            self.update_max = (series.update_sup(),) * steps
            t = series.converged + 1  # its moments, converged: the largest they can be
        else:
            self.update_max = tuple(series.update(t) for t in range(adam_first + 1, adam_first + steps + 1))
            # the moments at the end: AdamW's step t = adam_first + steps counts from fresh ones
            t = adam_first + steps
        growth, k, errors = series.growth(t), series.k(t), series.effective_steps(t)
        self.m_max = series.power_gap(series.b1, t) * g_max * growth + errors * UNDERFLOW
        self.v_max = series.power_gap(series.b2, t) * g_max * g_max * growth + errors * UNDERFLOW
        self.m_per_sqrt_v = k * growth
        self.m_floor = k * math.sqrt(errors) * SQRT_UNDERFLOW + errors * UNDERFLOW
        wd = _f32(training.weight_decay)
        classes = [self._reach(wd), self._reach(0.0)]
        self.reach_scale = (classes[0][0], classes[1][0])
        self.reach_offset = (classes[0][1], classes[1][1])

    def _reach(self, wd: float) -> tuple[float, float]:
        """(scale, offset) of the reach for parameters that step t shrinks by lr_t * wd."""
        shrink = widest = 1.0  # prod_t a_t, and prod_t max(1, |a_t|), above any tail's |product|
        moved = total = 0.0  # sum_t lr_t A_t prod_{j>t} |a_j| by Horner, and sum_t lr_t A_t
        for lr, update in zip(self.rates, self.update_max):  # in order (never sum(): its rounding varies)
            a = 1.0 - lr * wd
            shrink *= a
            widest *= max(1.0, abs(a))
            moved = moved * abs(a) + lr * update
            total += lr * update
        total *= widest  # bounds every partial sum of decayed updates
        decay = max(self.rates, default=0.0) * wd
        rounding = self.steps * PARAM_SLACK * widest * (1.0 + decay)
        scale = abs(shrink - 1.0) + rounding * widest
        offset = moved + rounding * 2.0 * total + self.steps * UNDERFLOW
        return scale, offset


def _power(base: float, exponent: int) -> float:
    result = 1.0
    for _ in range(exponent):
        result *= base
    return result


class AdamWBounds:
    """The bounds of one genesis' training configuration over its parameter layout."""

    def __init__(self, training: TrainingConfig, layout: ParameterLayout):
        self.training = training
        self.layout = layout
        self._norm_length = NORM_CHUNK + -(-layout.size // NORM_CHUNK)
        self._limits: dict[tuple[int, int, int], StepLimits] = {}

    def limits(self, steps: int, first: int = 0, adam_first: int | None = 0) -> StepLimits:
        """The limits steps steps from a start at global step first and AdamW step
        adam_first (None: whatever the step, as for a delta from a commitment not at hand)."""
        key = (steps, first, adam_first)
        if key not in self._limits:
            if len(self._limits) >= MAX_LIMITS:  # a round's units share a start: few are live
                del self._limits[next(iter(self._limits))]
            self._limits[key] = StepLimits(self.training, self._norm_length, steps, first, adam_first)
        return self._limits[key]

    def reach(self, start: np.ndarray, steps: int, first: int = 0, adam_first: int | None = 0) -> np.ndarray:
        """Per coordinate (float64): how far steps honest steps from global step first and
        AdamW step adam_first can move each parameter of start, the round's model."""
        limits = self.limits(steps, first, adam_first)
        reach = np.abs(start.astype(np.float64))
        for spec in self.layout.tensors:
            kind = 0 if spec.decayed else 1
            tensor = reach[spec.offset:spec.offset + spec.size]
            tensor *= limits.reach_scale[kind]
            tensor += limits.reach_offset[kind]
        return reach

    def violation(self, start: np.ndarray, state: TrainingState, adam_first: int = 0) -> str | None:
        """Why state (host buffers, finite) is no honest state of a unit that started from
        start at AdamW step adam_first (state.step - adam_first steps ago, its first at
        global step data_cursor minus those); None if it is within every bound."""
        s = state.step - adam_first
        limits = self.limits(s, state.data_cursor - s, adam_first)
        m, v = state.adam_m, state.adam_v
        if (v < 0.0).any():
            return f"adam_v is negative at {int(np.count_nonzero(v < 0.0))} coordinates"
        # the largest |m| and v are exact in float32, so these need no float64 pass
        for name, largest, limit, meaning in (
                ("adam_m", np.abs(m), limits.m_max, "(1 - beta1^s) * the clipped gradient"),
                ("adam_v", v, limits.v_max, "(1 - beta2^s) * the clipped gradient squared")):
            if float(largest.max(initial=0.0)) > limit:
                i = int(np.argmax(largest))
                return f"{name} beyond {meaning} at coordinate {i}: {largest[i]:.6g} > {limit:.6g}"
        which, i, value, limit = _first_beyond(
            start, state.params, m, v, self.layout.segments, self.layout.decay_mask,
            np.array(limits.reach_scale), np.array(limits.reach_offset), limits.m_per_sqrt_v,
            limits.m_floor)
        if which == _NONE:
            return None
        what = (f"params move beyond their {s}-step reach" if which == _PARAMS
                else "adam_m beyond K_s * sqrt(adam_v)")
        return f"{what} at coordinate {i}: {value:.6g} > {limit:.6g}"

    def clip_deltas(self, start: np.ndarray, deltas: list[np.ndarray], first: int) -> np.ndarray:
        """The deltas (float32), one row each, clipped coordinate-wise to the reach from
        start of a unit whose first step is global step first, at any AdamW step (its
        moments fresh or carried; steps_per_unit steps, rounded up to float32); an honest
        delta is unchanged."""
        reach = self.reach(start, self.training.steps_per_unit, first, None)
        reach *= 1.0 + DELTA_ROUNDING  # so its float32 rounding stays above the delta's
        high = reach.astype(np.float32)
        low = -high
        clipped = np.empty((len(deltas), start.size), np.float32)
        for row, delta in zip(clipped, deltas):
            np.maximum(delta, low, out=row)
            np.minimum(row, high, out=row)
        return clipped


_NONE, _PARAMS, _MOMENTUM = 0, 1, 2
MAX_LIMITS = 64


@kernel()
def _first_beyond(start, params, m, v, segments, decay, reach_scale, reach_offset,
                  m_per_sqrt_v, m_floor):
    """The first coordinate, in layout order, whose parameter moved beyond its reach
    (_PARAMS) or whose |m| exceeds m_per_sqrt_v * sqrt(v) + m_floor (_MOMENTUM), as
    (which, index, value, limit); (_NONE, -1, 0, 0) if none.  float64 throughout, each
    product and sum rounded on its own (fastmath off: the same as numpy's)."""
    for s in range(segments.shape[0]):
        kind = 0 if decay[s] else 1
        scale, offset = reach_scale[kind], reach_offset[kind]
        for i in range(segments[s, 0], segments[s, 0] + segments[s, 1]):
            origin = np.float64(start[i])
            moved = abs(np.float64(params[i]) - origin)
            reach = abs(origin) * scale + offset
            if moved > reach:
                return _PARAMS, i, moved, reach
            momentum = abs(np.float64(m[i]))
            limit = m_per_sqrt_v * math.sqrt(np.float64(v[i])) + m_floor
            if momentum > limit:
                return _MOMENTUM, i, momentum, limit
    return _NONE, -1, 0.0, 0.0


@functools.lru_cache(maxsize=4)
def adam_series(training: TrainingConfig) -> AdamSeries:
    """The AdamW series of a genesis' training configuration (made once)."""
    return AdamSeries(training)


@functools.lru_cache(maxsize=4)
def adamw_bounds(training: TrainingConfig, model: ModelConfig) -> AdamWBounds:
    """The bounds for a genesis' training and model configurations (made once)."""
    return AdamWBounds(training, ParameterLayout(model))
