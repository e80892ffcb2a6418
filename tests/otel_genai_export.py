"""Exports GenAI spans with the OpenTelemetry Python SDK's OTLP/HTTP exporter.

    python3 tests/otel_genai_export.py URL TOKEN

An agent run, as an instrumented agent framework records it under the GenAI
semantic conventions: an `invoke_agent` span; under it two `execute_tool`
spans, each with the `apply_guardrail` span that decided it; and a `chat`
span. The exporter is the SDK's own (protobuf over HTTP, gzip). Prints the
trace id (hex) on success.
"""
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

url, token = sys.argv[1], sys.argv[2]
exporter = OTLPSpanExporter(endpoint=f"{url}/v1/otlp/v1/traces", headers={"authorization": f"Bearer {token}"},
                            compression=Compression.Gzip)
provider = TracerProvider(resource=Resource.create({"service.name": "travel-agent-svc", "user.id": "bob"}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("agent-framework")

agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": "agent-otel-1",
         "gen_ai.agent.name": "Travel", "gen_ai.conversation.id": "conv-otel"}
with tracer.start_as_current_span("invoke_agent Travel", attributes=agent) as run:
    trace_id = format(run.get_span_context().trace_id, "032x")
    for tool, verdict in [("search_flights", "allow"), ("wire_money", "deny")]:
        with tracer.start_as_current_span(f"execute_tool {tool}", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                "gen_ai.tool.call.id": f"call-{tool}", "gen_ai.conversation.id": "conv-otel"}) as call:
            with tracer.start_as_current_span("apply_guardrail tool-policy", attributes={
                    "gen_ai.operation.name": "apply_guardrail", "gen_ai.security.decision.type": verdict,
                    "gen_ai.security.target.type": "tool_call", "gen_ai.security.target.id": tool,
                    "gen_ai.security.policy.id": "tool-policy-v3", "gen_ai.guardian.name": "tool-policy",
                    "gen_ai.conversation.id": "conv-otel"}):
                pass
            if verdict == "deny":
                call.set_status(Status(StatusCode.ERROR, "blocked by the guardrail"))
    with tracer.start_as_current_span("chat model-x", attributes={"gen_ai.operation.name": "chat"}):
        pass

if not provider.force_flush(30_000):
    sys.exit("the exporter did not flush")
provider.shutdown()
print(trace_id)
