//! Prometheus metrics at `/metrics` (being written).

use http::{Response, StatusCode};

use super::App;
use super::response::{self, Body};

pub fn render(_app: &App) -> Response<Body> {
    response::text(StatusCode::NOT_FOUND, "not found")
}
