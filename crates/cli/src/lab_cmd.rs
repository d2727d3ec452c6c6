//! `atomkernel models` (being written).
#[derive(clap::Args)]
pub struct ModelsArgs {}
pub fn run(_a: &ModelsArgs) -> Result<(), String> {
    Err("atomkernel models: not built yet".into())
}
