"""``GET /metrics``: the simulated engine under vLLM's Prometheus metric names, types, labels and
histogram buckets (vLLM V1, ``vllm/v1/metrics/loggers.py``), so dashboards and autoscalers
built for vLLM read a simulated deployment unchanged.

Every replica is one vLLM engine: series carry ``model_name`` (the served model name) and
``engine`` (the instance id). Latencies are *simulated* seconds, what the modelled deployment
would report (with ``--time-scale K`` the wall clock runs K× slower than them).
"""

from __future__ import annotations

import bisect
import itertools

from servesim.engine.instance import Instance, StepOutcome
from servesim.serve.online import Emission, StepListener, Stream

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def one_two_five_buckets(limit: int) -> list[float]:
    """1, 2, 5, 10, 20, 50, ... up to ``limit`` (vLLM's token-count buckets)."""
    out: list[float] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > limit:
                return out
            out.append(float(m * scale))
        scale *= 10


class TokenHistogram:
    """A histogram observed for every token: a bisect into plain counters.

    NOTE: prometheus_client's ``Histogram.observe`` takes a lock and scans its buckets, ~7 µs;
    two of them per token were a third of the server's work per token. The server observes
    from its one asyncio thread, and /metrics is read on that thread too, so no lock is
    needed. Exposed as an ordinary Prometheus histogram (``_bucket``, ``_count``, ``_sum``).
    """

    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...], buckets, registry):
        self.name, self.doc, self.labelnames = name, doc, labelnames
        self.bounds = [float(b) for b in buckets]
        self.series: dict[tuple[str, ...], TokenSeries] = {}
        registry.register(self)

    def labels(self, *values: str) -> TokenSeries:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = TokenSeries(self.bounds)
        return series

    def collect(self):
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for values, series in self.series.items():
            cumulative = list(itertools.accumulate(series.counts))
            family.add_metric(list(values), list(zip(edges, cumulative, strict=True)), series.sum)
        yield family


class TokenSeries:
    """One label set of a :class:`TokenHistogram`."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: list[float]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


FINISHED_REASONS = ("stop", "length", "abort")
"""The ``finished_reason`` labels of ``vllm:request_success`` (vLLM's, which includes abort)."""


class ServeMetrics(StepListener):
    """The Prometheus registry of one server, fed by the online engine."""

    def __init__(self, model_name: str, instances: list[Instance], max_model_len: int,
                 max_num_batched_tokens: int):  # fmt: skip
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.model_name = model_name
        labels = ("model_name", "engine")

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels + extra, registry=registry)

        def histogram(name: str, doc: str, buckets) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        running = Gauge("vllm:num_requests_running", "Number of requests in model execution "
                        "batches.", labels, registry=registry)  # fmt: skip
        waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be "
                        "processed.", labels, registry=registry)  # fmt: skip
        kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                   labels, registry=registry)  # fmt: skip
        for inst in instances:
            key = (model_name, str(inst.instance_id))
            running.labels(*key).set_function(lambda i=inst: len(i.running))
            waiting.labels(*key).set_function(lambda i=inst: len(i.waiting))
            kv.labels(*key).set_function(lambda i=inst: i.kv.usage)
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption "
                                   "from the engine.")  # fmt: skip
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried "
            "tokens."
        )  # fmt: skip
        self.prefix_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        )
        self.success = counter("vllm:request_success", "Count of successfully processed "
                               "requests.", ("finished_reason",))  # fmt: skip
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.itl = TokenHistogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            labels,
            ITL_BUCKETS,
            registry,
        )
        self.tpot = histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            ITL_BUCKETS,
        )
        latency = REQUEST_LATENCY_BUCKETS
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            latency,
        )
        self.queue = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            latency,
        )
        self.prefill = histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            latency,
        )
        self.decode = histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            latency,
        )
        self.inference = histogram("vllm:request_inference_time_seconds",
                                   "Histogram of time spent in RUNNING phase for request.",
                                   latency)  # fmt: skip
        sizes = one_two_five_buckets(max_model_len)
        self.request_prompt = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", sizes
        )
        self.request_generation = histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", sizes
        )
        self.request_max_tokens = histogram("vllm:request_params_max_tokens",
                                            "Histogram of the max_tokens request parameter.",
                                            sizes)  # fmt: skip
        step_sizes = [1.0] + [float(2**k) for k in range(3, 15) if 2**k < max_num_batched_tokens]
        self.iteration = histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            step_sizes + [float(max_num_batched_tokens)],
        )

        # servesim's own: whether the server keeps up with the clock it promises.
        self.lateness = TokenHistogram(
            "servesim:token_delivery_lateness_seconds",
            "Wall seconds between the instant a token is due (its simulated time mapped "
            "through --time-scale) and its hand-over to the HTTP stream.",
            ("model_name",),
            LATENESS_BUCKETS,
            registry,
        ).labels(model_name)
        self._per_token: dict[tuple[str, str], tuple] = {}
        # Every engine's series exist from the start at 0, as vLLM creates them: a rate() over
        # a counter no request has touched yet reads 0, not "no data".
        for inst in instances:
            key = (model_name, str(inst.instance_id))
            for series in (self.prompt_tokens, self.generation_tokens, self.preemptions,
                           self.prefix_queries, self.prefix_hits):  # fmt: skip
                series.labels(*key)
            for reason in FINISHED_REASONS:
                self.success.labels(*key, reason)

    def _key(self, stream: Stream) -> tuple[str, str]:
        req = stream.request
        return self.model_name, str(req.instance_id if req is not None else 0)

    # --- StepListener -------------------------------------------------------------------

    def step(self, instance: Instance, outcome: StepOutcome) -> None:
        rec = outcome.record
        key = (self.model_name, str(instance.instance_id))
        if rec.num_preempted:
            self.preemptions.labels(*key).inc(rec.num_preempted)
        per_step = (rec.prefill_tokens + rec.decode_tokens) / rec.num_steps
        if per_step:
            self.iteration.labels(*key).observe(per_step)

    def first_token(self, stream: Stream, time_s: float) -> None:
        req = stream.request
        assert req is not None
        key = self._key(stream)
        self.ttft.labels(*key).observe(time_s - stream.arrival_s)
        self.prompt_tokens.labels(*key).inc(stream.prompt_tokens)
        self.prefix_queries.labels(*key).inc(stream.prompt_tokens)
        self.prefix_hits.labels(*key).inc(req.num_cached_tokens)

    def tokens(self, stream: Stream, emission: Emission, gap_s: float) -> None:
        # NOTE: called for every token of every stream: the labelled children are looked up
        # once per engine (``labels()`` costs more than the update itself).
        key = self._key(stream)
        children = self._per_token.get(key)
        if children is None:
            children = self.generation_tokens.labels(*key), self.itl.labels(*key)
            self._per_token[key] = children
        generated, itl = children
        generated.inc(emission.num_tokens)
        if gap_s > 0:
            itl.observe(gap_s)
            for _ in range(emission.num_tokens - 1):  # tokens delivered together
                itl.observe(0.0)

    def finished(self, stream: Stream) -> None:
        req = stream.request
        assert req is not None and req.finish_s is not None
        key = self._key(stream)
        end = stream.last_s
        first = req.first_token_s if req.first_token_s is not None else end
        scheduled = req.first_scheduled_s if req.first_scheduled_s is not None else first
        self.success.labels(*key, stream.finish_reason).inc()
        self.e2e.labels(*key).observe(end - stream.arrival_s)
        self.queue.labels(*key).observe(max(0.0, scheduled - stream.arrival_s))
        self.prefill.labels(*key).observe(first - scheduled)
        self.decode.labels(*key).observe(req.finish_s - first)
        self.inference.labels(*key).observe(req.finish_s - scheduled)
        if stream.sent > 1:
            self.tpot.labels(*key).observe((req.finish_s - first) / (stream.sent - 1))
        self.request_prompt.labels(*key).observe(stream.prompt_tokens)
        self.request_generation.labels(*key).observe(stream.sent)
        self.request_max_tokens.labels(*key).observe(stream.max_tokens)

    def delivered(self, lateness_s: float) -> None:
        self.lateness.observe(lateness_s)

    def exposition(self) -> bytes:
        """The Prometheus text format of every series."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
