"""One scheme at one arrival rate, as a SimPy discrete-event simulation (times in ms).

A frontend receives Poisson arrivals and puts tasks on shared FIFO queues (``simpy.Store``):
one for the model instances and, for a systematic code, one for the parity instances. Each
instance is a SimPy process that takes the next task, serves it at batch 1 for a time drawn
from its pool's sampler times its current slowdown, and reports back. Tasks that are no longer
needed when dequeued (the query was answered, the group decoded) are dropped; tasks already
running finish. Encoding and decoding run at the frontend as delays (not a shared resource).

Every random stream is keyed by its role and instance index (``_rng``), so the same seed gives
the same arrivals and the same service times on instance i of a pool in every scheme: a coded
run without stragglers reproduces no redundancy's latencies exactly.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import simpy

from lcc_jax.serving import schemes as schemes_lib
from lcc_jax.serving import service

# Hedging: the delay is the running p95 of answered latencies, refreshed this often, over a
# window this long.
HEDGE_QUANTILE = 0.95
HEDGE_REFRESH = 256
HEDGE_WINDOW = 4096


@dataclasses.dataclass(frozen=True)
class Answers:
  """What a client's query met: pattern accuracy tables from ``accuracy.Accuracy``."""
  own: float  # accuracy of F's own output
  decoded: dict  # tuple of unavailable slots -> accuracy of a decoded answer under it


NO_ACCURACY = Answers(math.nan, {})


@dataclasses.dataclass(frozen=True)
class Spec:
  scheme: schemes_lib.Scheme
  rate_per_ms: float
  queries: int
  timings: service.Timings
  interference: service.Interference = service.Interference()
  answers: Answers = NO_ACCURACY
  seed: int = 0


@dataclasses.dataclass
class Result:
  """Per query (Q = queries rounded up to whole groups), in ms from the simulation's start."""
  arrival_Q: np.ndarray
  answer_Q: np.ndarray
  start_Q: np.ndarray  # when its own (first) task started service
  accuracy_Q: np.ndarray  # expected accuracy of the answer it got
  decoded_Q: np.ndarray  # bool: answered by the decoder

  @property
  def latency_Q(self) -> np.ndarray:
    return self.answer_Q - self.arrival_Q

  @property
  def wait_Q(self) -> np.ndarray:
    return self.start_Q - self.arrival_Q


class _Task:
  __slots__ = ("kind", "query", "group", "slot")

  def __init__(self, kind, query=-1, group=-1, slot=-1):
    self.kind, self.query, self.group, self.slot = kind, query, group, slot


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, *stream])


class _Frontend:
  """The state of one simulation; ``run`` returns the per-query ``Result``."""

  def __init__(self, spec: Spec):
    s = spec.scheme
    self.spec, self.k, self.r = spec, s.k, s.r
    self.env = simpy.Environment()
    q = -(-spec.queries // s.k) * s.k  # whole groups
    self.arrival_Q, self.answer_Q, self.start_Q = (np.full(q, math.nan) for _ in range(3))
    self.accuracy_Q = np.full(q, math.nan)
    self.decoded_Q = np.zeros(q, bool)
    self.back_GxN = np.zeros((q // s.k, s.k + s.r), bool)
    self.count_G = np.zeros(q // s.k, np.int64)
    self.rng = _rng(spec.seed, 1)
    self.queues = [simpy.Store(self.env) for _ in s.pools]
    samplers = (spec.timings.model, spec.timings.parity)
    for pool, size in enumerate(s.pools):
      for i in range(size):
        self.env.process(self._instance(pool, i, samplers[pool]))
    self.latencies, self.hedge_ms = [], spec.timings.model.quantile(HEDGE_QUANTILE)
    # Failing instances keep events pending forever: stop when every query is answered.
    self.unanswered, self.finished = q, self.env.event()

  def run(self) -> Result:
    self.env.process(self._arrivals())
    self.env.run(until=self.finished)
    return Result(self.arrival_Q, self.answer_Q, self.start_Q, self.accuracy_Q, self.decoded_Q)

  # ---------------------------------------------------------------------------- arrivals

  def _arrivals(self):
    gaps_Q = _rng(self.spec.seed, 0).exponential(1.0 / self.spec.rate_per_ms, len(self.arrival_Q))
    for query, gap in enumerate(gaps_Q):
      yield self.env.timeout(gap)
      self.arrival_Q[query] = self.env.now
      self._arrive(query)

  def _arrive(self, query: int):
    kind, (group, slot) = self.spec.scheme.kind, divmod(query, self.k)
    if kind != "nonsystematic":
      self.queues[0].put(_Task("query", query))
    if kind == "hedged":
      self.env.process(self._hedge(query))
    if kind in ("systematic", "nonsystematic") and slot == self.k - 1:
      self.env.process(self._encode(group))

  def _hedge(self, query: int):
    yield self.env.timeout(self.hedge_ms)
    if math.isnan(self.answer_Q[query]):
      self.queues[0].put(_Task("query", query))

  def _encode(self, group: int):
    yield self.env.timeout(self.spec.timings.encode.draw(self.rng))
    if self.spec.scheme.kind == "systematic":
      for slot in range(self.k, self.k + self.r):
        self.queues[1].put(_Task("parity", group=group, slot=slot))
    else:
      for slot in range(self.k + self.r):
        self.queues[0].put(_Task("coded", group=group, slot=slot))

  # ---------------------------------------------------------------------------- instances

  def _instance(self, pool: int, index: int, sampler: service.Sampler):
    env, inter = self.env, self.spec.interference
    rng = _rng(self.spec.seed, 2 + pool, index)
    slow = service.Slowdowns(_rng(self.spec.seed, 4 + pool, index), inter)
    fail_rng = _rng(self.spec.seed, 6 + pool, index)
    next_fail = env.now + fail_rng.exponential(inter.mtbf_ms) if inter.mtbf_ms < math.inf \
        else math.inf
    while True:
      get = self.queues[pool].get()
      if next_fail < math.inf:
        yield get | env.timeout(max(0.0, next_fail - env.now))
        if not get.triggered:  # failed while idle
          get.cancel()
          yield env.timeout(fail_rng.exponential(inter.repair_ms))
          next_fail = env.now + fail_rng.exponential(inter.mtbf_ms)
          continue
      else:
        yield get
      task = get.value
      if self._obsolete(task):
        continue
      if task.kind == "query" and math.isnan(self.start_Q[task.query]):
        self.start_Q[task.query] = env.now
      duration = sampler.draw(rng) * slow.factor_at(env.now)
      if env.now + duration > next_fail:  # fails mid-task: the task is lost
        yield env.timeout(next_fail - env.now)
        env.process(self._requeue(task, pool))
        yield env.timeout(fail_rng.exponential(inter.repair_ms))
        next_fail = env.now + fail_rng.exponential(inter.mtbf_ms)
        continue
      yield env.timeout(duration)
      self._done(task)

  def _requeue(self, task: _Task, pool: int):
    yield self.env.timeout(self.spec.interference.detect_ms)
    if not self._obsolete(task):
      self.queues[pool].put(task)

  def _obsolete(self, task: _Task) -> bool:
    if task.kind == "query":
      return not math.isnan(self.answer_Q[task.query])
    if task.kind == "parity":
      return not np.isnan(self.answer_Q[task.group * self.k:(task.group + 1) * self.k]).any()
    return self.count_G[task.group] >= self.k  # coded: the group is decoded

  # ---------------------------------------------------------------------------- answers

  def _done(self, task: _Task):
    if task.kind == "query":
      self._answer(task.query, self.spec.answers.own, False)
      if self.spec.scheme.kind != "systematic":
        return
      group, slot = divmod(task.query, self.k)
    else:
      group, slot = task.group, task.slot
    self.back_GxN[group, slot] = True
    self.count_G[group] += 1
    if self.count_G[group] == self.k:  # any k of the k + r outputs: decodable now
      self.env.process(self._decode(group, tuple(np.flatnonzero(~self.back_GxN[group]))))

  def _decode(self, group: int, unavailable: tuple[int, ...]):
    yield self.env.timeout(self.spec.timings.decode.draw(self.rng))
    accuracy = self.spec.answers.decoded.get(unavailable, math.nan)
    slots = range(self.k) if self.spec.scheme.kind == "nonsystematic" else unavailable
    for slot in slots:
      if slot < self.k:
        self._answer(group * self.k + slot, accuracy, True)

  def _answer(self, query: int, accuracy: float, decoded: bool):
    if not math.isnan(self.answer_Q[query]):
      return
    self.answer_Q[query] = self.env.now
    self.accuracy_Q[query] = accuracy
    self.decoded_Q[query] = decoded
    self.unanswered -= 1
    if not self.unanswered:
      self.finished.succeed()
    if self.spec.scheme.kind == "hedged":
      self._track(self.env.now - self.arrival_Q[query])

  def _track(self, latency: float):
    self.latencies.append(latency)
    if len(self.latencies) % HEDGE_REFRESH == 0:
      self.hedge_ms = float(np.quantile(self.latencies[-HEDGE_WINDOW:], HEDGE_QUANTILE))


def simulate(spec: Spec) -> Result:
  return _Frontend(spec).run()


def summarize(result: Result, warmup: float = 0.1) -> dict[str, float]:
  """Latency percentiles, mean wait and accuracy over the queries after the warm-up."""
  keep = slice(int(len(result.arrival_Q) * warmup), None)
  latency = result.latency_Q[keep]
  p50, p99, p999 = np.quantile(latency, [0.5, 0.99, 0.999])
  return {"p50_ms": float(p50), "p99_ms": float(p99), "p999_ms": float(p999),
          "gap_ms": float(p999 - p50), "mean_ms": float(latency.mean()),
          "accuracy": float(np.mean(result.accuracy_Q[keep])),
          "decoded_fraction": float(np.mean(result.decoded_Q[keep]))}
