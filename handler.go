package logx

import (
	"context"
	"log/slog"
	"slices"
)

// Handler returns a slog.Handler that logs into the cluster:
//
//	slog.SetDefault(slog.New(lx.Handler()))
//
// Records are queued like Info's (blocking when the queue is full, or
// dropped with ErrQueueFull under Config.DropWhenFull) and committed in the
// background; Flush waits for them. The record's time, level, message,
// source (from Record.PC) and attributes are rendered on the calling node.
// slog.Logger ignores the error Handle returns, so failures show in Stats.
func (lx *Stream) Handler() slog.Handler {
	return &handler{lx: lx, pre: [][]byte{nil}}
}

// handler is immutable once built: With* return copies.
type handler struct {
	lx     *Stream
	groups []string // open groups, outermost first
	prefix string   // text format: "g1.g2." for the open groups
	pre    [][]byte // attributes added by WithAttrs: pre[0] outside any group, pre[i] inside groups[i-1]
}

// Enabled implements slog.Handler.
func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return h.lx.Enabled(l) }

// Handle implements slog.Handler.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	e, err := h.lx.newEntry(r.Time, r.Level, r.PC, r.Message, h, nil, nil, &r)
	if err == nil {
		if err = h.lx.enqueue(ctx, e, !h.lx.cfg.DropWhenFull); err != nil {
			h.lx.putEntry(e)
		}
	}
	if err != nil {
		h.lx.stats.asyncRejected.Add(1)
	}
	return err
}

// WithAttrs implements slog.Handler.
func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.pre = slices.Clone(h.pre)
	last := len(h2.pre) - 1
	seg := slices.Clone(h2.pre[last])
	for _, a := range attrs {
		if h.lx.cfg.Format == FormatJSON {
			seg = appendAttrJSON(seg, a)
		} else {
			seg = appendAttrText(seg, h.prefix, a)
		}
	}
	h2.pre[last] = seg
	return &h2
}

// WithGroup implements slog.Handler.
func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(slices.Clip(h.groups), name)
	h2.prefix = h.prefix + name + "."
	if h.lx.cfg.Format == FormatJSON {
		h2.pre = append(slices.Clip(h.pre), nil)
	}
	return &h2
}

// appendAttrs renders the attributes of an entry after its built-in fields:
// those of the handler h (nil for the Logx methods), then args, attrs or rec.
func (h *handler) appendAttrs(b []byte, f Format, args []any, attrs []slog.Attr, rec *slog.Record) []byte {
	if f == FormatText {
		prefix := ""
		if h != nil {
			for _, p := range h.pre {
				b = append(b, p...)
			}
			prefix = h.prefix
		}
		for len(args) > 0 {
			var a slog.Attr
			a, args = argsToAttr(args)
			b = appendAttrText(b, prefix, a)
		}
		for _, a := range attrs {
			b = appendAttrText(b, prefix, a)
		}
		if rec != nil {
			rec.Attrs(func(a slog.Attr) bool {
				b = appendAttrText(b, prefix, a)
				return true
			})
		}
		return b
	}

	var groups []string
	if h != nil {
		if len(h.pre[0]) > 0 {
			b = append(jsonComma(b), h.pre[0]...)
		}
		groups = h.groups
	}
	var starts, opens [8]int
	st, op := starts[:0], opens[:0]
	for i, g := range groups {
		st = append(st, len(b))
		b = jsonComma(b)
		b = appendJSONString(b, g)
		b = append(b, ':', '{')
		op = append(op, len(b))
		b = append(b, h.pre[i+1]...)
	}
	for len(args) > 0 {
		var a slog.Attr
		a, args = argsToAttr(args)
		b = appendAttrJSON(b, a)
	}
	for _, a := range attrs {
		b = appendAttrJSON(b, a)
	}
	if rec != nil {
		rec.Attrs(func(a slog.Attr) bool {
			b = appendAttrJSON(b, a)
			return true
		})
	}
	// Close the groups, dropping those left empty.
	for i := len(groups) - 1; i >= 0; i-- {
		if len(b) == op[i] {
			b = b[:st[i]]
		} else {
			b = append(b, '}')
		}
	}
	return b
}

const badKey = "!BADKEY"

// argsToAttr turns the first of args into an Attr, as slog.Logger does:
// a string key and a value, an Attr, or a lone value under !BADKEY.
func argsToAttr(args []any) (slog.Attr, []any) {
	switch x := args[0].(type) {
	case string:
		if len(args) == 1 {
			return slog.String(badKey, x), nil
		}
		return slog.Any(x, args[1]), args[2:]
	case slog.Attr:
		return x, args[1:]
	default:
		return slog.Any(badKey, x), args[1:]
	}
}
