//! Request validation: every limit checked before anything is proposed, each refusal naming
//! what was wrong and the limit it broke.

use islab_storage::RESERVED_PREFIX;

use crate::config::Limits;
use crate::error::{Error, Result};

pub(crate) fn key(limits: &Limits, key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("the key is empty".into()));
    }
    if key.len() > limits.max_key_bytes {
        return Err(Error::InvalidArgument(format!(
            "the key is {} bytes, above the limit of {}",
            key.len(),
            limits.max_key_bytes
        )));
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(Error::InvalidArgument(
            "keys starting with \\xffislab/ are reserved".into(),
        ));
    }
    Ok(())
}

pub(crate) fn value(limits: &Limits, value: &[u8]) -> Result<()> {
    if value.len() > limits.max_value_bytes {
        return Err(Error::TooLarge(format!(
            "the value is {} bytes, above the limit of {}",
            value.len(),
            limits.max_value_bytes
        )));
    }
    Ok(())
}

pub(crate) fn batch(limits: &Limits, ops: usize, bytes: usize) -> Result<()> {
    if ops == 0 {
        return Err(Error::InvalidArgument("the batch is empty".into()));
    }
    if ops > limits.max_batch_ops {
        return Err(Error::TooLarge(format!(
            "the batch has {ops} operations, above the limit of {}",
            limits.max_batch_ops
        )));
    }
    if bytes > limits.max_batch_bytes {
        return Err(Error::TooLarge(format!(
            "the batch holds {bytes} bytes, above the limit of {}",
            limits.max_batch_bytes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_problem() {
        let l = Limits::default();
        assert!(key(&l, b"").unwrap_err().to_string().contains("empty"));
        assert!(
            key(&l, &[b'k'; 4097])
                .unwrap_err()
                .to_string()
                .contains("4097")
        );
        assert!(key(&l, b"\xffislab/session").is_err());
        key(&l, &[b'k'; 4096]).unwrap();
        assert!(matches!(
            value(&l, &vec![0; (1 << 20) + 1]),
            Err(Error::TooLarge(_))
        ));
        assert!(batch(&l, 10_001, 10).is_err());
        assert!(batch(&l, 0, 0).is_err());
    }
}
