// Package mesh holds the filter's mesh-wide decisions, the ones that involve
// shepherd-sidecar: the global limit check (its descriptors and how an answer,
// or the lack of one, becomes a verdict), token settlement and outcome batches
// sent from the plugin's tick, the policy poller's lease in shared data, and the
// policy overlay (canary weights, provider cooldowns, budgets, credentials)
// applied to the configuration's routes.
//
// It is pure: no ABI calls and no clock; times and bytes are passed in. The
// filter's callbacks ask it what to do and carry the answer out.
package mesh
