// Package logx builds the functions' JSON loggers (log/slog) and carries the
// Lambda request id through contexts. Only functions log; libraries never do.
package logx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// ParseLevel parses LOG_LEVEL (debug, info, warn, error).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("config: LOG_LEVEL=%q: want debug, info, warn or error", s)
}

// New returns a JSON logger writing to w at level, tagged with the function name.
func New(w io.Writer, level slog.Level, function string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("function", function)
}

// OrDiscard returns logger, or one that discards everything when it is nil
// (a Handler built without a logger, as in tests).
func OrDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}

// WithRequest returns logger annotated with the Lambda request id from ctx, if any.
func WithRequest(ctx context.Context, logger *slog.Logger) *slog.Logger {
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		return logger.With("request_id", lc.AwsRequestID)
	}
	return logger
}
