"""OpenTelemetry tracing of calls and attempts (optional: ``pip install router[otel]``).

The engine calls this interface only when tracing is on:

    span = tracing.start_call(alias=..., request_id=..., operation="chat", request=req)
    with span.attempt(target, attempt_number) as a:   # the attempt's span is current inside
        ...
        a.finish(record, response)                      # response None on failure
    span.skip(record)                                   # a skipped target: an event
    span.end(response=..., error=..., records=...)
"""

from __future__ import annotations
