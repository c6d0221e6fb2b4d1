package gateway

// Kick asks the running queue to deliver message id now rather than at
// its next attempt: the reason it was deferred is gone (the recipient has
// chosen a PDF password on the portal). It returns false when the wake
// channel is full; the poll then finds the message, as long as the caller
// has also made it due in the store. A message already in flight is not
// started twice.
func (q *Queue) Kick(id string) bool {
	q.init()
	select {
	case q.wake <- id:
		return true
	default:
		return false
	}
}
