//! refpoint-cim
