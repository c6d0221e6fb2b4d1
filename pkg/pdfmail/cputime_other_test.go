//go:build !unix

package pdfmail

import "time"

// processCPU is not measured here: -1 leaves the metric out.
func processCPU() time.Duration { return -1 }
