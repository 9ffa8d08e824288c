package logx

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestControlAnswerTooLarge: an answer over the frame limit is not
// written (no reader takes it) but named, so that the handler can answer
// with the error instead of ending the connection without a word; and a
// catch-up error, which every status answer carries, is clipped.
func TestControlAnswerTooLarge(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	err := writeJSONFrame(a, controlResponse{Error: strings.Repeat("x", maxControlFrame)})
	require.ErrorIs(t, err, errFrameTooLarge)

	f := &fsm{}
	f.setCatchUpErr(errors.New(strings.Repeat("y", 10*maxControlError)))
	require.LessOrEqual(t, len(f.catchUpErr()), maxControlError)
}
