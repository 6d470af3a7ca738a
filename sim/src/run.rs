//! One simulated run (madsim only).
