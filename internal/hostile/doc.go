// Package hostile holds the hostile-client tests: against a real run of
// plans/local.toml they connect to the run's broker with one worker's own
// credentials, and with none, try each attack a compromised worker could
// make (launch a command of its choice, replay a signed command, forge
// heartbeats and instance events, purge queues, command another worker),
// and assert that nothing happened. The package has no code of its own.
package hostile
