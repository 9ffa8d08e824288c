//go:build race

package logx

const raceEnabled = true
