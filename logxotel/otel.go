// Package logxotel puts OpenTelemetry's trace context into logx entries:
// every entry logged with a context that carries a valid span context
// gets its trace and span ids as the attributes trace_id and span_id,
// the names OpenTelemetry's log data model and its slog bridge use.
//
//	cfg.ContextAttrs = logxotel.ContextAttrs
//
// It is a module of its own, so that logx's core module does not require
// OpenTelemetry.
package logxotel

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// ContextAttrs returns trace_id and span_id, as lower-case hex (32 and 16
// digits), from the span context in ctx, or nothing when ctx carries no
// valid span context. It is a logx.Config.ContextAttrs.
func ContextAttrs(ctx context.Context) []slog.Attr {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []slog.Attr{
		slog.String("trace_id", sc.TraceID().String()),
		slog.String("span_id", sc.SpanID().String()),
	}
}
