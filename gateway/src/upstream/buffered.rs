//! The TCP connector for upgraded streams (exec, attach, port-forward): each connection reads
//! through a 64 KiB buffer. rustls asks the socket for at most 4 KiB at a time, so a bulk stream
//! from the API server otherwise costs four or more `recvfrom` calls per 16 KiB TLS record.
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;

/// Bytes one read from the socket may take: four full TLS records.
pub const READ_BUFFER: usize = 64 * 1024;

/// [`HttpConnector`] with its connections' reads buffered (only upgrades use it: ordinary
/// requests are small, and an idle pooled connection should not hold 64 KiB).
#[derive(Clone)]
pub struct BufferedConnector(pub HttpConnector);

impl tower_service::Service<Uri> for BufferedConnector {
    type Response = TokioIo<BufferedTcp>;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            Ok(TokioIo::new(BufferedTcp(BufReader::with_capacity(
                READ_BUFFER,
                tcp,
            ))))
        })
    }
}

/// A TCP connection read through a buffer; writes go straight to the socket.
pub struct BufferedTcp(BufReader<TcpStream>);

impl Connection for BufferedTcp {
    fn connected(&self) -> Connected {
        self.0.get_ref().connected()
    }
}

impl AsyncRead for BufferedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BufferedTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.0.get_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.0.get_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.get_ref().is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.0.get_mut()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.0.get_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes cross both ways whole and in order however small the reads, and a read smaller
    /// than what the socket holds takes the rest from the buffer.
    #[tokio::test]
    async fn reads_through_the_buffer_and_writes_straight() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            s.write_all(&data).await.unwrap();
            let mut back = vec![0u8; 5];
            s.read_exact(&mut back).await.unwrap();
            back
        });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let mut c = BufferedConnector(http);
        let uri: Uri = format!("http://{addr}").parse().unwrap();
        let io = tower_service::Service::call(&mut c, uri).await.unwrap();
        assert!(!io.connected().is_proxied());
        let mut io = io.into_inner();
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        while got.len() < 200_000 {
            let n = io.read(&mut small).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&small[..n]);
        }
        assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        io.write_all(b"hello").await.unwrap();
        assert_eq!(server.await.unwrap(), b"hello");
    }
}
