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
	if s := h.lx.sampler; s != nil {
		now := r.Time
		if now.IsZero() {
			now = h.lx.now()
		}
		if !s.allow(r.Level, r.Message, now.UnixNano()) {
			return nil // sampled out: counted in Stats.Sampled, summarized in the log
		}
	}
	e, err := h.lx.newEntry(ctx, r.Time, r.Level, r.PC, r.Message, h, nil, nil, &r)
	if err == nil {
		if err = h.lx.enqueue(ctx, e, !h.lx.cfg.DropWhenFull); err != nil {
			h.lx.putEntry(e)
		}
	}
	h.lx.noteAsync(err)
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
			seg = appendAttrJSON(seg, a, 1+len(h.groups))
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
	if h.lx.cfg.Format == FormatJSON && 2+len(h.groups) > maxJSONDepth {
		// Its object would nest the line past what json.Valid accepts
		// (tooDeep): attributes stay in the innermost group opened.
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
