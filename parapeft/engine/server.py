"""gRPC server for the engine (contract: proto/engine.proto)."""

from __future__ import annotations

from collections import OrderedDict
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..adapter_io import AdapterLoadError
from . import errors
from .rpc import engine_pb2 as pb
from .rpc import engine_pb2_grpc as pb_grpc
from .grammar import ResponseFormat
from .sampling import SamplingParams
from .service import EngineService

API_VERSION = 3
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Engine"].full_name  # "para.engine.v1.Engine"
PARAM_METADATA = "param"  # trailing metadata of an INVALID_ARGUMENT: the request field at fault, when known
REMEMBERED_USAGE = 4096  # ended requests whose usage Cancel still answers (a cancel may race the last chunk)

# Every refusal's status code, by error type (most specific first); the gateway's failover depends on them.
# A request that fails by its own fault after it started (non-finite logits) ends with FAILED_PRECONDITION
# in Generate; a step that fails ends every running request with INTERNAL.
STATUS = [
    (errors.UnknownAdapter, grpc.StatusCode.NOT_FOUND),
    (errors.AdapterExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.AdapterInUse, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.EngineStopped, grpc.StatusCode.UNAVAILABLE),
    (errors.BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (AdapterLoadError, grpc.StatusCode.INVALID_ARGUMENT),
    (FileNotFoundError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.EngineError, grpc.StatusCode.INVALID_ARGUMENT),
]
REFUSALS = tuple(kind for kind, _ in STATUS)


def status_of(error: Exception) -> grpc.StatusCode:
    return next(code for kind, code in STATUS if isinstance(error, kind))


def _sampling(message: pb.SamplingParams, default_max_tokens: int) -> SamplingParams:
    return SamplingParams(
        max_tokens=message.max_tokens or max(1, default_max_tokens),
        temperature=message.temperature,
        top_p=message.top_p or 1.0,
        top_k=message.top_k,
        seed=message.seed if message.HasField("seed") else None,
        ignore_eos=message.ignore_eos,
        presence_penalty=message.presence_penalty,
        frequency_penalty=message.frequency_penalty,
        repetition_penalty=message.repetition_penalty or 1.0,
        logit_bias=dict(message.logit_bias),
        top_logprobs=message.top_logprobs,
        response_format=ResponseFormat(message.response_format.type, message.response_format.json_schema)
        if message.HasField("response_format") and message.response_format.type not in ("", "text") else None,
    )


class EngineServicer(pb_grpc.EngineServicer):
    def __init__(self, service: EngineService, default_max_tokens: int = 256):
        self.service = service
        self.default_max_tokens = default_max_tokens
        self.live: dict[str, object] = {}  # request_id -> its stream, while it runs
        self.ended: OrderedDict[str, tuple[int, int]] = OrderedDict()  # request_id -> (prompt, completion) tokens

    def _ended(self, request_id: str, stream) -> None:
        """Stop the request (if it still runs) and remember what it used."""
        self.service.cancel(stream)
        if request_id and request_id in self.live:
            # remembered before it leaves `live`, so that a Cancel racing this finds it in one or the other
            self.ended[request_id] = (len(stream.request.prompt), len(stream.request.tokens))
            self.live.pop(request_id, None)
            while len(self.ended) > REMEMBERED_USAGE:
                self.ended.popitem(last=False)

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext):
        kind = request.WhichOneof("input")
        try:
            if kind == "chat":
                ids = self.service.encode(chat=[{"role": m.role, "content": m.content} for m in request.chat.messages])
            elif kind == "prompt_ids":
                ids = self.service.encode(ids=list(request.prompt_ids.ids))
            else:
                ids = self.service.encode(prompt=request.prompt)
            # Without max_tokens: up to the default, within what the context leaves after the prompt.
            default = min(self.default_max_tokens, self.service.engine.max_len - len(ids))
            stream = self.service.submit(ids, request.adapter, _sampling(request.sampling, default),
                                         list(request.sampling.stop))
        except REFUSALS as err:
            if getattr(err, "param", None):
                context.set_trailing_metadata(((PARAM_METADATA, err.param),))
            context.abort(status_of(err), str(err))
        if request.request_id:
            self.live[request.request_id] = stream
        # However the call ends (finished, client gone): free its row and blocks, remember its usage
        context.add_callback(lambda: self._ended(request.request_id, stream))
        first = True
        while True:
            event = stream.events.get()
            if event.finish_reason == "failed":
                context.abort(grpc.StatusCode.INTERNAL, f"engine step failed: {event.text}")
            if event.finish_reason == "error":  # this request alone failed; the others go on
                context.set_trailing_metadata((("completion-tokens", str(event.completion_tokens)),))
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, event.text)
            chunk = pb.GenerateChunk(request_id=request.request_id, token_ids=event.token_ids, text=event.text,
                                     logprobs=event.logprobs, finish_reason=event.finish_reason,
                                     top_logprobs=[self._alternatives(alternatives) for alternatives in event.top_logprobs])
            if event.finish_reason:
                chunk.usage.prompt_tokens, chunk.usage.completion_tokens = event.prompt_tokens, event.completion_tokens
                yield chunk
                return
            if first:  # the prompt's size from the start: a stream cut short is still billed for its prompt
                chunk.usage.prompt_tokens, first = len(ids), False
            yield chunk

    def _alternatives(self, alternatives: list[tuple[int, float]]) -> pb.TopLogprobs:
        ids = [i for i, _ in alternatives]
        return pb.TopLogprobs(ids=ids, logprobs=[p for _, p in alternatives],
                              texts=[self.service.tokenizer.decode([i]) for i in ids])

    def Cancel(self, request, context):
        stream = self.live.get(request.request_id)
        if stream is not None:
            self._ended(request.request_id, stream)
        usage = self.ended.get(request.request_id)
        if usage is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no running or recently ended request {request.request_id!r}")
        return pb.Usage(prompt_tokens=usage[0], completion_tokens=usage[1])

    def LoadAdapter(self, request, context):
        try:
            return pb.AdapterInfo(**self.service.load_adapter(
                request.name, request.path, request.config_json, request.weights, request.validate_only))
        except REFUSALS as err:
            context.abort(status_of(err), str(err))

    def UnloadAdapter(self, request, context):
        try:
            self.service.unload_adapter(request.name)
        except REFUSALS as err:
            context.abort(status_of(err), str(err))
        return pb.UnloadAdapterResponse()

    def ListAdapters(self, request, context):
        return pb.ListAdaptersResponse(adapters=[pb.AdapterInfo(**a) for a in self.service.adapters()])

    def Health(self, request, context):
        engine = self.service.engine
        return pb.HealthResponse(serving=self.service.healthy, model=self.service.model_name, api_version=API_VERSION,
                                 max_context=engine.max_len, slots=engine.config.max_seqs,
                                 kv_tokens=engine.cache.tokens, block_size=engine.config.block_size,
                                 vocab_size=engine.vocab, structured_output=engine.tokenizer is not None,
                                 metrics_port=self.service.metrics.port)

    def Stats(self, request, context):
        return pb.StatsResponse(**self.service.stats())


def serve(service: EngineService, port: int, host: str = "127.0.0.1", threads: int = 64) -> tuple[grpc.Server, int]:
    """Start the server; returns it and the bound port (pass port 0 for a free one)."""
    # Adapters may come inline in LoadAdapter: allow messages as large as the gateway's upload limit.
    limits = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    # gRPC turns SO_REUSEPORT on by default: a worker started again on its old port would then share it with any
    # server that took the port meanwhile, and connections would be split between two engines. Refuse instead.
    options = limits + [("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=options)
    pb_grpc.add_EngineServicer_to_server(EngineServicer(service), server)
    # The standard health service beside our own Health, for orchestrators' probes (grpc_health_probe,
    # Kubernetes' grpc probes): "" and the engine's service name are SERVING while the worker serves.
    probes = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(probes, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise RuntimeError(f"cannot listen on {host}:{port}")
    server.start()
    for name in ("", SERVICE_NAME):
        probes.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound
