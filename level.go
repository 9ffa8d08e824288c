package logx

import (
	"fmt"
	"log/slog"
	"strings"
)

// ParseLevel parses a level name as slog.Level.UnmarshalText does ("debug",
// "INFO", "warn+2", "ERROR-4"), and also accepts "warning".
func ParseLevel(s string) (slog.Level, error) {
	if strings.EqualFold(s, "warning") {
		return slog.LevelWarn, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("logx: unknown level %q (want debug, info, warn or error, optionally with +N or -N)", s)
	}
	return l, nil
}
