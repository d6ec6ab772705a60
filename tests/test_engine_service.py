"""The gRPC engine service with a real server and client."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from parapeft import BASE_ADAPTER, ParaConfig, get_para_model
from parapeft.backbones import load_base_model
from parapeft.engine import Engine, EngineConfig, SamplingParams
from parapeft.engine.rpc import engine_pb2 as pb
from parapeft.engine.rpc import engine_pb2_grpc as pb_grpc
from parapeft.engine.server import serve
from parapeft.engine.service import EngineService
from tiny_models import randomize_adapter, save_tiny_checkpoint

CORPUS = ["the cat sat on the mat and the dog ran to the park with a red ball"] * 30


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-engine")
    save_tiny_checkpoint(path, CORPUS, chat=True, vocab_size=120, context=256)
    model, tokenizer = load_base_model(str(path))
    para = get_para_model(model, ParaConfig(r=4), adapter_name="alpha")
    randomize_adapter(para, "alpha", 3)
    adapter_dir = path / "beta-adapter"
    beta = get_para_model(load_base_model(str(path))[0], ParaConfig(r=2, pooler="max"), adapter_name="beta")
    randomize_adapter(beta, "beta", 4)
    beta.save_pretrained(adapter_dir)
    return para.eval(), tokenizer, adapter_dir


@pytest.fixture()
def served(tiny):
    """A worker on the tiny model: its stub, service and port."""
    para, tokenizer, _ = tiny
    service = EngineService(para, tokenizer, "tiny", EngineConfig(max_seqs=4, max_len=128))
    assert service.capture_graphs() == 0  # none on a CPU; taking the engine's lock beside its loop must not block
    server, port = serve(service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.EngineStub(channel), service, port
    channel.close()
    server.stop(0).wait()
    service.close()
    for name in list(para.peft_config):
        if name != "alpha":
            para.delete_adapter(name)


@pytest.fixture()
def client(served):
    stub, service, _ = served
    return stub, service


def collect(stub, **fields):
    chunks = list(stub.Generate(pb.GenerateRequest(**fields)))
    return [t for c in chunks for t in c.token_ids], "".join(c.text for c in chunks), chunks[-1]


def test_streamed_tokens_equal_the_in_process_engine(client, tiny):
    stub, _ = client
    para, tokenizer, _ = tiny
    prompt = "the cat sat on"
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    engine = Engine(para, max_seqs=1, max_len=128)
    expected = engine.submit(ids, "alpha", SamplingParams(max_tokens=12, ignore_eos=True))
    engine.run_until_done()
    tokens, text, last = collect(stub, request_id="r1", adapter="alpha", prompt=prompt,
                                 sampling=pb.SamplingParams(max_tokens=12, ignore_eos=True))
    assert tokens == expected.tokens
    assert text == tokenizer.decode(expected.tokens, skip_special_tokens=True)
    assert last.finish_reason == "length" and last.request_id == "r1"
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (len(ids), 12)


def test_chat_input_uses_the_chat_template(client, tiny):
    stub, _ = client
    _, tokenizer, _ = tiny
    messages = [{"role": "user", "content": "the dog ran"}]
    expected_prompt = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                                add_special_tokens=False).input_ids
    _, _, last = collect(stub, chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="the dog ran")]),
                         sampling=pb.SamplingParams(max_tokens=3, ignore_eos=True))
    assert last.usage.prompt_tokens == len(expected_prompt)


def test_stop_strings_end_the_stream_without_the_stop_text(client, tiny):
    stub, _ = client
    tokens, text, _ = collect(stub, adapter="alpha", prompt="the cat", sampling=pb.SamplingParams(max_tokens=40, ignore_eos=True))
    full = text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    if not stop.strip():
        pytest.fail(f"pick a visible stop string from {full!r}")
    _, text, last = collect(stub, adapter="alpha", prompt="the cat",
                            sampling=pb.SamplingParams(max_tokens=40, ignore_eos=True, stop=[stop]))
    assert last.finish_reason == "stop" and text == full[: full.find(stop)] and stop not in text


@pytest.mark.parametrize(
    "fields, code, message",
    [
        ({"adapter": "nope", "prompt": "the cat"}, grpc.StatusCode.NOT_FOUND, "unknown adapter 'nope'"),
        ({"prompt": ""}, grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ({"prompt": "the cat " * 80}, grpc.StatusCode.INVALID_ARGUMENT, "exceeds the context"),
        ({"prompt": "the cat", "sampling": pb.SamplingParams(temperature=-1)}, grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
        ({"prompt_ids": pb.TokenIds(ids=[5, 10**6])}, grpc.StatusCode.INVALID_ARGUMENT, "token ids"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_engine_keeps_serving(client, fields, code, message):
    stub, _ = client
    with pytest.raises(grpc.RpcError) as error:
        list(stub.Generate(pb.GenerateRequest(**fields)))
    assert error.value.code() == code and message in error.value.details()
    tokens, _, _ = collect(stub, prompt="the cat", sampling=pb.SamplingParams(max_tokens=4, ignore_eos=True))
    assert len(tokens) == 4


def test_adapters_load_list_unload_and_bad_files(client, tiny, tmp_path):
    stub, _ = client
    _, _, beta_dir = tiny
    info = stub.LoadAdapter(pb.LoadAdapterRequest(name="beta", path=str(beta_dir)))
    assert info.name == "beta" and info.parameters > 0
    assert {a.name for a in stub.ListAdapters(pb.ListAdaptersRequest()).adapters} == {"alpha", "beta"}
    tokens, _, _ = collect(stub, adapter="beta", prompt="the cat", sampling=pb.SamplingParams(max_tokens=5, ignore_eos=True))
    assert len(tokens) == 5
    with pytest.raises(grpc.RpcError) as error:
        stub.LoadAdapter(pb.LoadAdapterRequest(name="beta", path=str(beta_dir)))
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    (tmp_path / "adapter_config.json").write_text((beta_dir / "adapter_config.json").read_text())
    (tmp_path / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(grpc.RpcError) as error:
        stub.LoadAdapter(pb.LoadAdapterRequest(name="broken", path=str(tmp_path)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "safetensors" in error.value.details()
    stub.UnloadAdapter(pb.UnloadAdapterRequest(name="beta"))
    with pytest.raises(grpc.RpcError) as error:
        list(stub.Generate(pb.GenerateRequest(adapter="beta", prompt="the cat")))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    health = stub.Health(pb.HealthRequest())
    assert health.serving and health.model == "tiny" and health.api_version == 3 and health.max_context == 128
    assert health.slots == 4 and health.vocab_size == len(tiny[1]) and health.kv_tokens >= 128


def test_adapters_sent_inline_validate_and_load_like_a_directory(client, tiny, tmp_path):
    stub, _ = client
    _, _, beta_dir = tiny
    config = (beta_dir / "adapter_config.json").read_bytes()
    weights = (beta_dir / "adapter_model.safetensors").read_bytes()
    checked = stub.LoadAdapter(pb.LoadAdapterRequest(name="beta", config_json=config, weights=weights, validate_only=True))
    assert checked.parameters > 0
    assert "beta" not in {a.name for a in stub.ListAdapters(pb.ListAdaptersRequest()).adapters}  # only checked
    stub.LoadAdapter(pb.LoadAdapterRequest(name="acme/beta@1", config_json=config, weights=weights))
    stub.LoadAdapter(pb.LoadAdapterRequest(name="beta", path=str(beta_dir)))
    sampling = pb.SamplingParams(max_tokens=6, ignore_eos=True)
    inline, _, _ = collect(stub, adapter="acme/beta@1", prompt="the dog", sampling=sampling)
    from_disk, _, _ = collect(stub, adapter="beta", prompt="the dog", sampling=sampling)
    assert inline == from_disk
    # A wider backbone's adapter: same file format, wrong shapes for this one.
    wide = json.loads(config)
    wide["dims"] = {**wide["dims"], "hidden": wide["dims"]["hidden"] * 2}
    for bad_config, bad_weights, needle in [(json.dumps(wide).encode(), weights, "hidden"),
                                            (config, weights[:-7], "safetensors"),
                                            (b"{not json", weights, "config"),
                                            (config, b"", "give the adapter")]:
        with pytest.raises(grpc.RpcError) as error:
            stub.LoadAdapter(pb.LoadAdapterRequest(name="bad", config_json=bad_config, weights=bad_weights,
                                                   validate_only=True))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in error.value.details()
    big = pb.LoadAdapterRequest(name="big", config_json=config, weights=weights + b"\0" * (8 << 20))
    with pytest.raises(grpc.RpcError) as error:  # over gRPC's default 4 MiB, under the worker's limit: read, then refused
        stub.LoadAdapter(big)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_hundreds_of_concurrent_streams_all_complete(client):
    stub, service = client
    adapters = ["alpha", BASE_ADAPTER, ""]
    def one(i):
        tokens, _, last = collect(stub, request_id=f"req-{i}", adapter=adapters[i % 3], prompt="the dog " * (1 + i % 5),
                                  sampling=pb.SamplingParams(max_tokens=3 + i % 7, ignore_eos=True))
        return i, len(tokens), last
    with ThreadPoolExecutor(48) as pool:
        results = list(pool.map(one, range(240)))
    assert all(n == 3 + i % 7 and last.request_id == f"req-{i}" and last.usage.completion_tokens == n
               for i, n, last in results)
    stats = service.stats()
    assert stats["running"] == 0 and stats["waiting"] == 0 and stats["free_slots"] == 4


def test_a_client_that_goes_away_frees_its_slot(client):
    stub, service = client
    stream = stub.Generate(pb.GenerateRequest(prompt="the cat", sampling=pb.SamplingParams(max_tokens=100, ignore_eos=True)))
    next(stream)
    stream.cancel()
    for _ in range(100):
        if service.stats()["free_slots"] == 4:
            break
        threading.Event().wait(0.05)
    assert service.stats()["free_slots"] == 4


@pytest.mark.slow
def test_para_engine_command_serves_the_embedded_model():
    adapter = "adapters/smollm2-135m/copa"
    process = subprocess.Popen([sys.executable, "-m", "parapeft.cli.main", "engine", "--port", "0", "--slots", "2",
                                "--max-len", "512", "--adapter", f"copa={adapter}"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        port = int(re.search(r":(\d+) \(", line).group(1))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.EngineStub(channel)
            assert stub.Health(pb.HealthRequest(), timeout=30).model == "smollm2-135m"
            chat = pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="What is the capital of France?")])
            _, text, last = collect(stub, chat=chat, sampling=pb.SamplingParams(max_tokens=12))
            assert "Paris" in text and last.finish_reason in ("stop", "length")
            assert [a.name for a in stub.ListAdapters(pb.ListAdaptersRequest()).adapters] == ["copa"]
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_a_worker_started_with_exit_with_parent_stops_when_its_parent_is_killed(tmp_path):
    import os
    import signal
    import time

    save_tiny_checkpoint(tmp_path, CORPUS, chat=True, vocab_size=120, context=256)
    # The parent starts the worker, reports its pid once it serves, then waits to be killed.
    parent_code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'parapeft.cli.main', 'engine', '--model', {str(tmp_path)!r},"
        " '--port', '0', '--device', 'cpu', '--exit-with-parent'], stdout=subprocess.PIPE, text=True)\n"
        "p.stdout.readline()\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(worker, 0)  # serving
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its killed parent")


def test_cancel_stops_a_request_and_answers_exactly_what_it_generated(client):
    stub, service = client
    before = service.stats()["tokens_generated"]
    stream = stub.Generate(pb.GenerateRequest(request_id="long-1", prompt="the cat",
                                              sampling=pb.SamplingParams(max_tokens=100, ignore_eos=True)))
    first = next(stream)
    assert first.usage.prompt_tokens > 0 and len(first.token_ids) == 1  # the prompt's size from the start
    usage = stub.Cancel(pb.CancelRequest(request_id="long-1"))
    assert usage.prompt_tokens == first.usage.prompt_tokens and 1 <= usage.completion_tokens <= 100
    threading.Event().wait(0.3)  # nothing more is generated after the answer
    # exactly what the engine generated for it (however far it got before the cancel arrived)
    assert service.stats()["tokens_generated"] - before == usage.completion_tokens
    assert stub.Cancel(pb.CancelRequest(request_id="long-1")) == usage  # remembered once ended
    stream.cancel()
    with pytest.raises(grpc.RpcError) as error:
        stub.Cancel(pb.CancelRequest(request_id="never-started"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_failed_step_ends_every_stream_and_a_broken_cleanup_stops_the_worker(client, monkeypatch):
    """A step that raises ends the requests in flight with INTERNAL and the worker serves on; if cleaning up after
    it raises too (the engine's bookkeeping is broken), every stream still ends, and the worker stops taking
    requests: Health says it is not serving and Generate answers UNAVAILABLE (``para engine`` then exits)."""
    stub, service = client
    engine = service.engine
    cancel = engine.cancel

    def fail_once(owner, name: str, error: Exception) -> None:
        """``owner.name`` raises ``error`` at its next call, then is itself again."""
        original = getattr(owner, name)

        def failing(*args, **kwargs):
            monkeypatch.setattr(owner, name, original)
            raise error

        monkeypatch.setattr(owner, name, failing)

    fail_once(engine, "launch", RuntimeError("boom"))
    with pytest.raises(grpc.RpcError) as error:
        collect(stub, prompt="the cat", sampling=pb.SamplingParams(max_tokens=4))
    assert error.value.code() == grpc.StatusCode.INTERNAL and "boom" in error.value.details()
    assert service.serving and engine.blocks.all_free() and not engine.running
    assert len(collect(stub, prompt="the cat", sampling=pb.SamplingParams(max_tokens=4, ignore_eos=True))[0]) == 4

    fail_once(service, "_publish", RuntimeError("detokenising failed"))  # as a tokenizer or a stop's cancel might
    with pytest.raises(grpc.RpcError) as error:
        collect(stub, prompt="the cat", sampling=pb.SamplingParams(max_tokens=4))
    assert error.value.code() == grpc.StatusCode.INTERNAL and "detokenising failed" in error.value.details()
    assert service.healthy and engine.in_flight == 0 and engine.blocks.all_free() and not engine.running
    assert len(collect(stub, prompt="the cat", sampling=pb.SamplingParams(max_tokens=4, ignore_eos=True))[0]) == 4

    def broken_cancel(request):
        cancel(request)
        raise KeyError("lost")

    fail_once(engine, "launch", RuntimeError("boom"))
    monkeypatch.setattr(engine, "cancel", broken_cancel)
    with pytest.raises(grpc.RpcError) as error:
        collect(stub, prompt="the cat", sampling=pb.SamplingParams(max_tokens=4))
    assert error.value.code() == grpc.StatusCode.INTERNAL
    service.thread.join(timeout=10)
    assert not service.healthy and not service.thread.is_alive() and "boom" in repr(service.failure)
    assert not stub.Health(pb.HealthRequest()).serving
    with pytest.raises(grpc.RpcError) as error:
        collect(stub, prompt="the cat", sampling=pb.SamplingParams(max_tokens=4))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


ANSWER = {"type": "object", "additionalProperties": False, "required": ["answer"],
          "properties": {"answer": {"type": "string", "enum": ["yes", "no", "maybe"]}}}


def test_response_format_constrains_streams_beside_free_ones(client):
    stub, service = client
    constrained = pb.SamplingParams(max_tokens=40, response_format=pb.ResponseFormat(
        type="json_schema", json_schema=json.dumps(ANSWER)))
    free = pb.SamplingParams(max_tokens=12, ignore_eos=True)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: collect(stub, prompt="the cat", adapter="alpha", sampling=s),
                                [constrained, free, constrained, free]))
    for tokens, text, last in results[0::2]:
        assert json.loads(text)["answer"] in ("yes", "no", "maybe") and last.finish_reason == "stop"
    assert [len(tokens) for tokens, _, _ in results[1::2]] == [12, 12]
    health = stub.Health(pb.HealthRequest())
    assert health.structured_output and health.api_version == 3
    with pytest.raises(grpc.RpcError) as error:
        collect(stub, prompt="the cat", sampling=pb.SamplingParams(
            response_format=pb.ResponseFormat(type="json_schema", json_schema="{oops")))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "json_schema" in error.value.details()


def test_the_standard_grpc_health_service_answers_probes(served):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _, _, port = served
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    probe = health_pb2_grpc.HealthStub(channel)
    for name in ("", "para.engine.v1.Engine"):
        assert probe.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as error:
        probe.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def test_worker_metrics_add_up_to_what_was_sent(client):
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    stub, service = client
    port = service.metrics.serve(0)
    assert stub.Health(pb.HealthRequest()).metrics_port == port

    def scrape() -> dict[tuple[str, tuple], float]:
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    before = scrape()
    sent = [("alpha", 5), ("", 3), ("alpha", 7), ("", 2), ("alpha", 4)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda job: collect(stub, prompt="the cat sat", adapter=job[0], sampling=pb.SamplingParams(
            max_tokens=job[1], ignore_eos=True)), sent))
    after = scrape()

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    prompt = results[0][2].usage.prompt_tokens
    assert grew("para_engine_request_success_total", adapter="alpha", finished_reason="length") == 3
    assert grew("para_engine_request_success_total", adapter="base", finished_reason="length") == 2
    assert grew("para_engine_generation_tokens_total", adapter="alpha") == 16
    assert grew("para_engine_generation_tokens_total", adapter="base") == 5
    assert grew("para_engine_prompt_tokens_total", adapter="alpha") == 3 * prompt
    assert grew("para_engine_time_to_first_token_seconds_count") == 5
    assert grew("para_engine_step_duration_seconds_count") >= 7  # the longest request alone took 7 steps
    assert after[("para_engine_num_requests_running", ())] == 0
    assert after[("para_engine_kv_blocks_used", ())] == 0
    assert ("para_engine_adapter_loads_total", (("kind", "para"),)) in after


def test_a_service_that_launches_steps_ahead_streams_what_one_step_at_a_time_streams(tiny):
    """overlap_steps in the service's loop: the same tokens, text, stops (length, stop strings, which cancel a
    request while a step may be ahead) and usage for every stream, with steps launched ahead."""
    para, tokenizer, _ = tiny
    words = ["the cat sat on", "a red", "the dog ran to the", "on the mat and", "the park with"]
    asks = [(tokenizer(words[i % 5], add_special_tokens=False).input_ids, "alpha" if i % 3 else "",
             SamplingParams(max_tokens=4 + 3 * (i % 4), ignore_eos=True)) for i in range(12)]

    def serve_all(overlap: bool, stops: list[list[str]]):
        service = EngineService(para, tokenizer, "tiny", EngineConfig(max_seqs=4, max_len=128, overlap_steps=overlap))
        try:
            streams = [service.submit(ids, a, s, stop) for (ids, a, s), stop in zip(asks, stops)]
            got = []
            for stream in streams:
                events = [stream.events.get(timeout=60)]
                while not events[-1].finish_reason:
                    events.append(stream.events.get(timeout=60))
                got.append(([t for e in events for t in e.token_ids], "".join(e.text for e in events),
                            events[-1].finish_reason, events[-1].completion_tokens))
            counted = service.metrics.registry.get_sample_value("para_engine_steps_ahead_total")
            assert counted == service.engine.steps_ahead  # what Prometheus scrapes
            return got, service.engine.steps_ahead
        finally:
            service.close()

    plain, _ = serve_all(False, [[]] * len(asks))
    # every other stream stops at a character from the middle of what it generates
    stops = [[text[len(text) // 2]] if i % 2 and text else [] for i, (_, text, _, _) in enumerate(plain)]
    expected, ahead = serve_all(False, stops)
    got, ahead_with_overlap = serve_all(True, stops)
    assert ahead == 0 and ahead_with_overlap > 0
    assert got == expected
    assert {reason for _, _, reason, _ in expected} == {"length", "stop"}


def test_a_worker_refuses_a_port_another_server_holds(served):
    """gRPC would share the port (SO_REUSEPORT) and split connections between two engines: binding fails instead."""
    _, service, port = served
    with pytest.raises(RuntimeError):
        serve(service, port)
