//go:build !unix

package main

import "time"

// processCPU is not measured outside unix; CPU figures print as zero.
func processCPU() time.Duration { return 0 }
