"""The profile on traces from genuine instrumentation: OpenAI autolog against the fake chat server,
LangGraph, DSPy's DummyLM, and OpenTelemetry/OpenInference spans sent to a real `mlflow server`."""

from __future__ import annotations

import json
import time

import mlflow
import openai
import pytest

from mlflow_eval_agent.demo.chat_server import ChatReply, FakeChatServer, ToolCall, rule_based, scripted
from mlflow_eval_agent.traces.profile import build_profile
from tests.fakes.trace_writer import create_experiment



@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("shapes")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield uri, str(folder / "artifacts")
    mlflow.set_tracking_uri(None)


def use_experiment(store, name: str) -> str:
    uri, artifacts = store
    experiment_id = create_experiment(uri, name, artifacts)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def same_on_both_paths(uri: str, experiment_id: str):
    sql = build_profile(uri, experiment_id)
    api = build_profile(uri, experiment_id, path="api")
    assert sql.model_dump(exclude={"source", "generated_at"}) == api.model_dump(exclude={"source", "generated_at"})
    return sql


# --- the fake chat server itself ---------------------------------------------------------------


def test_fake_chat_server_speaks_openai():
    replies = scripted([
        ChatReply(content="Hello there", prompt_tokens=7, completion_tokens=2),
        ChatReply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")]),
        ChatReply(content="streamed words here"),
        ChatReply(status=429, error="slow down"),
        ChatReply(content="late", delay_s=0.3),
    ])
    with FakeChatServer(replies) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        first = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
        assert (first.choices[0].message.content, first.usage.total_tokens, first.model) == ("Hello there", 9, "m1")
        call = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "weather?"}]).choices[0]
        assert call.finish_reason == "tool_calls"
        assert (call.message.tool_calls[0].function.name, json.loads(call.message.tool_calls[0].function.arguments)) == ("get_weather", {"city": "Paris"})
        chunks = list(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "s"}], stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed words here"
        assert chunks[-1].usage.completion_tokens == 3
        with pytest.raises(openai.RateLimitError, match="slow down"):
            client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
        started = time.monotonic()
        assert client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}]).choices[0].message.content == "late"
        assert time.monotonic() - started >= 0.3
        echoed = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "after the script"}])
        assert echoed.choices[0].message.content == "You said: after the script"
        assert len(server.requests) == 6 and server.requests[0]["messages"][0]["content"] == "hi"
        assert [m.id for m in client.models.list()] == ["fake-gpt-4o-mini"]


# --- genuine instrumentation -------------------------------------------------------------------

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_openai_autolog(store):
    experiment_id = use_experiment(store, "openai-app")
    rules = [
        (r"weather", ChatReply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})])),
        (r"busy", ChatReply(status=429, error="Rate limit reached for gpt-4o-mini in org org-123 on requests per min")),
        (r"crash", ChatReply(status=500, error="upstream exploded")),
        (r"silent", ChatReply(content="")),
    ]
    mlflow.openai.autolog()
    try:
        with FakeChatServer(rule_based(rules)) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)

            @mlflow.trace(span_type="TOOL")
            def get_weather(city: str) -> str:
                return f"sunny in {city}"

            @mlflow.trace(span_type="AGENT")
            def assistant(question: str) -> str:
                messages = [{"role": "user", "content": question}]
                try:
                    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
                except openai.RateLimitError:
                    return "Sorry, I am busy."  # swallowed: a hidden failure
                message = reply.choices[0].message
                if message.tool_calls:
                    messages.append(message.model_dump(exclude_none=True))
                    for tc in message.tool_calls:
                        messages.append({"role": "tool", "tool_call_id": tc.id, "content": get_weather(**json.loads(tc.function.arguments))})
                    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                return reply.choices[0].message.content

            for question in ["what's the weather?", "hello", "busy now?", "silent please"]:
                assistant(question)
            with pytest.raises(openai.InternalServerError):
                assistant("crash please")
    finally:
        mlflow.openai.autolog(disable=True)
    p = same_on_both_paths(store[0], experiment_id)
    assert (p.trace_count, p.status_counts) == (5, {"OK": 4, "ERROR": 1})
    chat = next(s for s in p.spans if s.span_type == "CHAT_MODEL")
    assert (chat.count, chat.error_count) == (6, 2)
    assert (p.llm.calls, {m.name: m.count for m in p.llm.models}) == (6, {"gpt-4o-mini": 6})
    assert [(t.name, t.calls) for t in p.tools] == [("get_weather", 1)]
    assert {s.exception_type for s in p.error_signatures} == {"RateLimitError", "InternalServerError"}
    assert all(s.span_name == chat.name for s in p.error_signatures)  # where they began, not the agent span
    rate = next(s for s in p.error_signatures if s.exception_type == "RateLimitError")
    assert rate.signature == "RateLimitError: Error code: 429 - Rate limit reached for gpt-4o-mini in org <ID> on requests per min"
    assert (p.hidden_failures.count, p.hidden_failures.trace_ids) == (1, rate.trace_ids)
    assert p.tokens.traces_with_usage == 3 and p.tokens.total == p.tokens.input + p.tokens.output > 0
    assert (p.outputs.empty_ok, p.outputs.missing) == (1, 1)


def test_langgraph_react_agent(store):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.prebuilt import ToolNode, create_react_agent

    class ToolCallingFake(GenericFakeChatModel):
        def bind_tools(self, tools, **kwargs):
            return self

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order by id."""
        if order_id.startswith("9"):
            raise ValueError(f"order {order_id} not found in region eu-west-1")
        return f"order {order_id}: shipped"

    def model(order_id: str):
        return ToolCallingFake(messages=iter([
            AIMessage(content="", tool_calls=[{"name": "lookup_order", "args": {"order_id": order_id}, "id": f"call_{order_id}"}]),
            AIMessage(content=f"Order {order_id}: see above."),
        ]))

    experiment_id = use_experiment(store, "langgraph-app")
    mlflow.langchain.autolog()
    try:
        for order_id in ["123", "456", "987", "999"]:
            forgiving = order_id == "999"  # the tool error is handed back to the model: a hidden failure
            tools = ToolNode([lookup_order], handle_tool_errors=True) if forgiving else [lookup_order]
            agent = create_react_agent(model(order_id), tools)
            try:
                agent.invoke({"messages": [{"role": "user", "content": f"Where is order {order_id}?"}]})
            except ValueError:
                assert order_id == "987"
    finally:
        mlflow.langchain.autolog(disable=True)
    p = same_on_both_paths(store[0], experiment_id)
    assert (p.trace_count, p.status_counts) == (4, {"OK": 3, "ERROR": 1})
    assert [(t.name, t.calls, t.errors) for t in p.tools] == [("lookup_order", 4, 2)]
    assert [(s.signature, s.span_name, s.count) for s in p.error_signatures] == [("ValueError: order <N> not found in region eu-west-1", "lookup_order", 2)]
    assert p.hidden_failures.count == 1 and p.hidden_failures.by_span[0].span_name == "lookup_order"
    assert p.llm.calls == 7 and p.llm.calls_without_model == 7  # fake models name no model
    assert p.shapes.inputs[0].kind == "chat_messages"


def test_dspy_with_dummy_lm(store):
    import dspy
    from dspy.utils import DummyLM

    experiment_id = use_experiment(store, "dspy-app")
    mlflow.dspy.autolog()
    try:
        with dspy.context(lm=DummyLM([{"answer": "Paris"}, {"answer": "4"}, {"answer": ""}])):
            qa = dspy.Predict("question -> answer")
            answers = [qa(question=q).answer for q in ["Capital of France?", "2+2?", "Say nothing"]]
    finally:
        mlflow.dspy.autolog(disable=True)
    assert answers == ["Paris", "4", ""]
    p = same_on_both_paths(store[0], experiment_id)
    assert (p.trace_count, p.status_counts) == (3, {"OK": 3})
    # Predict.forward is typed LLM around the DummyLM call: one model call per trace, not two.
    assert (p.llm.calls, p.llm.calls_per_trace.max) == (3, 1)
    assert [m.name for m in p.llm.models] == ["dummy"]
    assert (p.outputs.empty_ok, p.shapes.outputs[0].keys) == (1, ["answer"])


def test_otlp_openinference_spans_sent_to_mlflow_server(mlflow_server):
    from mlflow import MlflowClient
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    experiment_id = MlflowClient(mlflow_server.url).create_experiment("otlp-openinference")
    provider = TracerProvider()  # our own provider: MLflow's tracing is left alone
    exporter = OTLPSpanExporter(endpoint=f"{mlflow_server.url}/v1/traces", headers={"x-mlflow-experiment-id": experiment_id}, timeout=30)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("openinference-style")
    for i in range(6):
        attrs = {"openinference.span.kind": "AGENT", "input.value": json.dumps({"question": f"q{i}"}), "output.value": f"answer {i}", "session.id": f"sess-{i % 2}"}
        with tracer.start_as_current_span("agent", attributes=attrs):
            docs = "[]" if i % 3 == 0 else json.dumps([{"document": {"content": "d"}}])
            with tracer.start_as_current_span("retrieve", attributes={"openinference.span.kind": "RETRIEVER", "input.value": f"q{i}", "output.value": docs}):
                pass
            llm = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.token_count.prompt": 10, "llm.token_count.completion": 3,
                   "llm.token_count.total": 13, "input.value": "hi", "output.value": "yo"}
            with tracer.start_as_current_span("ChatCompletion", attributes=llm):
                pass
            with tracer.start_as_current_span("search_tool", attributes={"openinference.span.kind": "TOOL", "input.value": "x"}) as span:
                if i in (2, 5):
                    try:
                        raise ConnectionError(f"connect to 10.0.0.{i}:443 timed out after {10 * i}s")
                    except ConnectionError as exc:
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, str(exc)))
    assert provider.force_flush(30_000)
    provider.shutdown()

    http = build_profile(mlflow_server.url, experiment_id)
    local = build_profile(mlflow_server.backend_uri, experiment_id)  # the server's own store, read directly
    assert (http.source.path, local.source.path) == ("api", "sql")
    assert http.model_dump(exclude={"source", "generated_at"}) == local.model_dump(exclude={"source", "generated_at"})
    p = local
    assert p.trace_count == 6
    assert {(s.name, s.span_type) for s in p.spans} == {("agent", "AGENT"), ("retrieve", "RETRIEVER"), ("ChatCompletion", "LLM"), ("search_tool", "TOOL")}
    assert p.odd_data["spans_unset_status"].count == 6 * 4 - 2  # OTLP spans without a status stay UNSET
    assert [(s.signature, s.count) for s in p.error_signatures] == [("ConnectionError: connect to <IP> timed out after <N>s", 2)]
    assert p.hidden_failures.count == 2  # the trace is OK (its root is UNSET) though the tool failed
    assert p.tokens.model_dump() == {"input": 60, "output": 18, "total": 78, "traces_with_usage": 6}
    assert [(m.name, m.count) for m in p.llm.models] == [("gpt-4o", 6)]
    assert (p.retrieval.empty, p.retrieval.traces_with_empty_retrieval) == (2, 2)
    assert (p.sessions.distinct_sessions, p.sessions.traces_with_session) == (2, 6)
