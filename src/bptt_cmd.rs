#[derive(clap::Args, Debug)]
pub struct BpttArgs {}
pub fn command(_a: &BpttArgs) -> anyhow::Result<()> { anyhow::bail!("not yet") }
