//! refpoint-core
