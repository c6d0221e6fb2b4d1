package directory

// LookupObserver sees, for every lookup, the outcome of each source that
// was asked (in order, until one found a valid certificate) and of each
// answer served from the cache (source SourceCache). Metrics count them;
// ObserveLookup runs in the lookup and must not block.
type LookupObserver interface {
	ObserveLookup(source, result string)
}

// SourceCache is the source of an answer served from the cache.
const SourceCache = "cache"

// Results a LookupObserver sees.
const (
	LookupFound       = "found"       // a valid certificate
	LookupNotFound    = "not_found"   // no certificate at all
	LookupInvalid     = "invalid"     // certificates, none valid
	LookupUndecided   = "undecided"   // a certificate could not be judged now
	LookupUnavailable = "unavailable" // the source could not be asked
)

func (d *Directory) observe(source, result string) {
	if d.opts.Observer != nil {
		d.opts.Observer.ObserveLookup(source, result)
	}
}

// sourceResult is a source's result when it offered no valid certificate.
func sourceResult(candidates int, undecided bool) string {
	switch {
	case undecided:
		return LookupUndecided
	case candidates > 0:
		return LookupInvalid
	}
	return LookupNotFound
}

// cachedResult is the result of a cached answer (only definite answers
// are cached).
func cachedResult(r Result) string {
	switch r.Answer {
	case AnswerFound:
		return LookupFound
	case AnswerNoValid:
		return LookupInvalid
	}
	return LookupNotFound
}
