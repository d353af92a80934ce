package lambdamain

import (
	"context"
	"log/slog"

	"github.com/cfsync/cfsync/internal/logx"
	"github.com/cfsync/cfsync/internal/metrics"
)

// StartInvocation begins a handler's invocation: the returned logger is log
// (nil: discard) with the Lambda request id of ctx; end, deferred by the
// handler, flushes the invocation's EMF metrics m (nil: none) and logs a
// failed flush.
func StartInvocation(ctx context.Context, log *slog.Logger, m *metrics.Recorder) (_ *slog.Logger, end func()) {
	log = logx.WithRequest(ctx, logx.OrDiscard(log))
	return log, func() {
		if err := m.Flush(); err != nil {
			log.Warn("flush metrics", "error", err.Error())
		}
	}
}
