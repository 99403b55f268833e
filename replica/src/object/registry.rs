pub struct ObjectTypes;
pub struct Registry;
