//! refpoint facade
