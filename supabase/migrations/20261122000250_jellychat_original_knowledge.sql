-- The embeddings of an original JellyChat database, set aside by *_jellychat_original.sql,
-- become documents and chunks of this project's knowledge bases: the wiki's in `wiki`,
-- DefichainPython's in `defichainpython`. They were made by OpenAI's
-- text-embedding-ada-002 (LangChain's default when the original ran; 1536 dimensions),
-- and are recorded as such, so that a server configured with another embedder searches
-- them by full text and says how to re-ingest. Chunks of one `source` form a document
-- (source#title where one source holds pages of several titles). Every chunk keeps its
-- content and metadata (plus kb, url, updated and the original id as `jellychat_id`).
--
-- Also keeps the original's second search function answering, with this project's
-- match_embeddings result shape. Does nothing else on any other database.

do $$
declare
    r record;
    v_counts jsonb := '{}'::jsonb;
    v_value text;
    v_date timestamptz;
    v_docs bigint;
    v_chunks bigint;
    v_indexes text[];
    v_index text;
begin
    if to_regclass('public.jelly_original_embeddings_wiki') is null
       and to_regclass('public.jelly_original_embeddings_defichainpython') is null then
        return;
    end if;
    -- Building an HNSW index once over all the vectors is many times faster than
    -- inserting them into it one by one: set the (still empty) vector indexes aside.
    select array_agg(pg_get_indexdef(i.indexrelid)) into v_indexes
    from pg_index i join pg_class c on c.oid = i.indexrelid join pg_am a on a.oid = c.relam
    where i.indrelid = 'public.kb_chunks'::regclass and a.amname = 'hnsw';
    for v_index in
        select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid
        join pg_am a on a.oid = c.relam
        where i.indrelid = 'public.kb_chunks'::regclass and a.amname = 'hnsw'
    loop
        execute format('drop index public.%I', v_index);
    end loop;
    for r in select * from (values ('jelly_original_embeddings_wiki', 'wiki'),
                                   ('jelly_original_embeddings_defichainpython', 'defichainpython'))
             as t (tbl, kb)
    loop
        if to_regclass('public.' || r.tbl) is null then
            continue;
        end if;
        execute format($sql$
            create temporary table jelly_import on commit drop as
            select row_number() over (order by e.ctid) as n,
                   e.id::text as original_id,
                   coalesce(e.content, '') as content,
                   coalesce(e.metadata, '{}'::jsonb) as metadata,
                   e.embedding::vector as embedding,
                   coalesce(nullif(e.metadata ->> 'title', ''), '') as title,
                   coalesce(nullif(e.metadata ->> 'source', ''), nullif(e.metadata ->> 'url', ''))
                       as url,
                   null::text as source,
                   null::timestamptz as updated
            from public.%I e
        $sql$, r.tbl);
        update jelly_import set source = coalesce(url, 'jellychat:' || coalesce(original_id, n::text));
        with shared as (
            select source from jelly_import group by source having count(distinct title) > 1
        )
        update jelly_import i set source = i.source || '#' || i.title
        from shared s where s.source = i.source;
        -- 'last_updated' as the wiki loader wrote it (a date); anything unreadable stays null
        for v_value in select distinct metadata ->> 'last_updated' from jelly_import
                       where metadata ? 'last_updated'
        loop
            begin
                v_date := v_value::date::timestamptz;
            exception when others then
                v_date := null;
            end;
            update jelly_import set updated = v_date where metadata ->> 'last_updated' = v_value;
        end loop;

        insert into public.kb_documents
            (kb, source, title, content_hash, updated_at, embedder, dimension, chunks)
        select r.kb, i.source, (array_agg(i.title order by i.n))[1],
               encode(sha256(convert_to(string_agg(i.content, E'\n' order by i.n), 'UTF8')), 'hex'),
               max(i.updated),
               case when max(vector_dims(i.embedding)) = 1536 then 'openai:text-embedding-ada-002'
                    when count(i.embedding) > 0 then 'jellychat-original' end,
               max(vector_dims(i.embedding)),
               count(*)
        from jelly_import i
        group by i.source
        on conflict (kb, source) do nothing;
        get diagnostics v_docs = row_count;

        insert into public.kb_chunks (kb, document_id, content, metadata, embedding)
        select r.kb, d.id, i.content,
               jsonb_strip_nulls(jsonb_build_object(
                   'url', case when i.url ~* '^https?://' then i.url end,
                   'updated', i.updated::date::text,
                   'jellychat_id', i.original_id))
               || i.metadata || jsonb_build_object('kb', r.kb),
               i.embedding
        from jelly_import i
        join public.kb_documents d on d.kb = r.kb and d.source = i.source
        order by i.n;
        get diagnostics v_chunks = row_count;

        v_counts := v_counts || jsonb_build_object(r.kb, jsonb_build_object(
            'rows', (select count(*) from jelly_import), 'documents', v_docs, 'chunks', v_chunks,
            'embedder', (select max(d.embedder) from public.kb_documents d where d.kb = r.kb)));
        drop table jelly_import;
        execute format('drop table public.%I', r.tbl);
    end loop;
    foreach v_index in array coalesce(v_indexes, '{}'::text[]) loop
        execute v_index;
    end loop;
    if v_counts <> '{}'::jsonb then
        insert into public.jelly_original_upgrade (step, counts) values ('knowledge', v_counts)
        on conflict (step) do update set counts = excluded.counts, converted_at = now();
    end if;
end
$$;

-- The original's DefichainPython search, answered from the `defichainpython` knowledge
-- base with match_embeddings' result shape (ids are now bigint).
create or replace function public.match_embeddings_defichain_python(
    query_embedding vector,
    match_count int default null,
    filter jsonb default '{}'
)
returns table (id bigint, content text, metadata jsonb, similarity double precision)
language plpgsql stable
as $$
declare
    dim int := vector_dims(query_embedding);
begin
    perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
    perform set_config('hnsw.ef_search', greatest(200, coalesce(match_count, 10))::text, true);
    return query execute format($sql$
        select c.id, c.content, c.metadata,
               (1 - (c.embedding::vector(%1$s) <=> $1::vector(%1$s)))::double precision
        from public.kb_chunks c
        where c.kb = 'defichainpython' and vector_dims(c.embedding) = %1$s and c.metadata @> $2
        order by c.embedding::vector(%1$s) <=> $1::vector(%1$s)
        limit $3
    $sql$, dim)
    using query_embedding, coalesce(filter, '{}'::jsonb), coalesce(match_count, 10);
end
$$;
