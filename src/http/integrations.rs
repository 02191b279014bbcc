//! Consumer-specific endpoints under `/integrations/…` (being written).

use http::{Request, Response};
use hyper::body::Incoming;

use super::App;
use super::response::{self, Body, Failure, Style};

pub async fn dispatch(app: &App, _request: Request<Incoming>, request_id: &str) -> Response<Body> {
    response::failure(Failure::NotFound, Style::Plain, &app.challenge, request_id)
}
