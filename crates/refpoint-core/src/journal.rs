//! The change-tracking journal of a virtual disk (format in progress).
