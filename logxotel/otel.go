// Package logxotel puts OpenTelemetry's trace context into logx entries:
// every entry logged with a context that carries a valid span context
// gets its trace id, span id and trace flags as the attributes trace_id,
// span_id and trace_flags, the names OpenTelemetry's specification gives
// them in log formats other than OTLP ("Trace Context in non-OTLP Log
// Formats"). (OpenTelemetry's own slog bridge sets an OTLP record's trace
// fields instead; logx writes lines, not OTLP records.)
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

// ContextAttrs returns trace_id, span_id and trace_flags, as lower-case
// hex (32, 16 and 2 digits; trace_flags 01 when the trace is sampled),
// from the span context in ctx, or nothing when ctx carries no valid span
// context. It is a logx.Config.ContextAttrs.
func ContextAttrs(ctx context.Context) []slog.Attr {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []slog.Attr{
		slog.String("trace_id", sc.TraceID().String()),
		slog.String("span_id", sc.SpanID().String()),
		slog.String("trace_flags", sc.TraceFlags().String()),
	}
}
