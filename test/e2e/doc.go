// Package e2e holds cfsync's end-to-end tests: the three functions built as
// Lambda bootstraps and run under internal/lambdarun, the resources of
// template.yaml deployed into a real moto_server, the RDP simulator
// (pkg/rdp/rdptest), and internal/pipeline playing EventBridge Scheduler and
// the SQS event source. Every test runs its own moto_server and simulator;
// they are skipped with -short. The cold-start benchmark lives here too:
//
//	go test -run '^$' -bench ColdStart -benchtime 5x ./test/e2e/
package e2e
