package config

import (
	"strings"
	"testing"
	"time"
)

func TestDurationText(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "90d", want: 90 * 24 * time.Hour},
		{in: "1d", want: 24 * time.Hour},
		{in: "0d", want: 0},
		{in: "-2d", want: -48 * time.Hour},
		{in: "720h", want: 720 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "d", wantErr: "not a duration"},
		{in: "1.5d", wantErr: "not a duration"},
		{in: "+3d", wantErr: "not a duration"},
		{in: "x9d", wantErr: "not a number of days"},
		{in: "999999999999d", wantErr: "not a number of days"},
		{in: "100001d", wantErr: "not a number of days"},
		{in: "", wantErr: "not a duration"},
	}
	for _, tc := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tc.in))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want one with %q", tc.in, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case d.Duration != tc.want:
			t.Errorf("%q = %v, want %v", tc.in, d.Duration, tc.want)
		}
	}
}
