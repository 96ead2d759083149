//! refpoint-engine
