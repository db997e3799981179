//go:build !linux

package main

import (
	"errors"
	"time"
)

var errNoCPU = errors.New("CPU accounting needs Linux's /proc")

func cpuOf(...int) (time.Duration, error) { return 0, errNoCPU }

func selfCPU() (time.Duration, error) { return 0, errNoCPU }
