//! virtio-console control messages (virtio 1.2, §5.3.6.2): `struct virtio_console_control
//! { le32 id; le16 event; le16 value; }`.

pub const DEVICE_READY: u16 = 0;
pub const DEVICE_ADD: u16 = 1;
pub const PORT_READY: u16 = 3;
pub const PORT_OPEN: u16 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlMessage {
    pub id: u32,
    pub event: u16,
    pub value: u16,
}

impl ControlMessage {
    pub const SIZE: usize = 8;

    pub fn new(id: u32, event: u16, value: u16) -> Self {
        Self { id, event, value }
    }

    pub fn from_bytes(b: [u8; Self::SIZE]) -> Self {
        Self {
            id: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            event: u16::from_le_bytes([b[4], b[5]]),
            value: u16::from_le_bytes([b[6], b[7]]),
        }
    }

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.id.to_le_bytes());
        b[4..6].copy_from_slice(&self.event.to_le_bytes());
        b[6..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }
}
