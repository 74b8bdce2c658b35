package rlqs

// Settled reports whether no action waits to be sent, and how many messages
// have been taken for sending: once every client has received that many,
// nothing is in flight.
func (s *Service) Settled() (bool, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		if len(st.order) > 0 {
			return false, s.taken
		}
	}
	return true, s.taken
}
