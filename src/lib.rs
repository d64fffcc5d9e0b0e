//! redmutex (skeleton, being written)
