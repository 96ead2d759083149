//! refpoint-jobs
