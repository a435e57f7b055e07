//! Request parameters parsed like Rack (in progress).
