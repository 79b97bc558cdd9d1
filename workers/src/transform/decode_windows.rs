//! `window/1` messages from the aggregates topic → window results; a
//! message that does not decode becomes a dead letter carrying its bytes.

use crate::dead_letter::DeadLetter;
use crate::error::StageError;
use crate::flow::{Rebalance, Transform};
use crate::io::codec::{self, DecodeError};
use crate::source::consumer::Received;
use crate::window::WindowResult;

#[derive(Debug, Default)]
pub struct DecodeWindows;

impl Transform for DecodeWindows {
    type In = Vec<Received>;
    type Out = Vec<WindowResult>;
    type State = ();
    type Error = StageError;

    fn apply(
        &mut self,
        input: Vec<Received>,
        out: &mut Vec<WindowResult>,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), StageError> {
        for received in input {
            match codec::decode_window(&received.message.value) {
                Ok(r) => out.push(r),
                Err(e) => {
                    let field = match &e {
                        DecodeError::Invalid { field, .. } => Some(*field),
                        _ => None,
                    };
                    dead.push(DeadLetter::message(
                        received.origin,
                        e.reason(),
                        field,
                        e.to_string(),
                        received.message,
                    ));
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<WindowResult>) -> Result<(), StageError> {
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), StageError> {
        Ok(())
    }

    fn rebalance(&mut self, _change: Rebalance<()>) -> Result<(), StageError> {
        Ok(())
    }
}
