//go:build !linux

package main

import (
	"syscall"
	"time"
)

// childAttr: no parent-death signal outside Linux.
func childAttr() *syscall.SysProcAttr { return nil }

// procCPU is unknown outside Linux.
func procCPU(int) (time.Duration, bool) { return 0, false }

// procRSS is unknown outside Linux.
func procRSS(int) (int64, bool) { return 0, false }

// loadAvg is unknown outside Linux.
func loadAvg() string { return "unknown" }
