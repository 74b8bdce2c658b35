//go:build !wasip1

package proxywasm

import "github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"

func init() { abi.RegisterGuest(guest{}) }
